"""The sandbox receiver: a small "government endpoint" for development, demos and end-to-end tests.

It plays an outside party, so it never imports Django or the rest of this project (only the standard
library, ``standardwebhooks``, ``cryptography`` and ``rfc8785``), and it imports its own modules
relatively, so the folder can be copied out and run on its own. See docs/sandbox-receiver.md.
"""
