"""Every write to the intake side goes through a function in this package."""
