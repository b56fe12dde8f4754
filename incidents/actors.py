"""Who did something: a staff user, a detector, or the system. Passed explicitly to every service."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from incidents.choices import ActorKind

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from incidents.models import Detector


@dataclass(frozen=True)
class Actor:
    kind: ActorKind
    user: AbstractBaseUser | None = None
    detector: Detector | None = None
    system_label: str = "system"

    @classmethod
    def for_user(cls, user: AbstractBaseUser) -> Actor:
        if user is None or not user.is_authenticated:
            raise ValueError("a user actor needs an authenticated user")
        return cls(kind=ActorKind.USER, user=user)

    @classmethod
    def for_detector(cls, detector: Detector) -> Actor:
        return cls(kind=ActorKind.DETECTOR, detector=detector)

    @classmethod
    def system(cls, label: str = "system") -> Actor:
        return cls(kind=ActorKind.SYSTEM, system_label=label)

    @property
    def label(self) -> str:
        if self.kind == ActorKind.USER:
            return f"user:{self.user.get_username()}"
        if self.kind == ActorKind.DETECTOR:
            return f"detector:{self.detector.name}"
        return f"system:{self.system_label}"
