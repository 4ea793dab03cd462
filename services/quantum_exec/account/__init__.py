"""Account awareness (issue #13): the user data stream parsed, applied and acted upon, all I/O-free."""
