"""Trade notices: one short line per notable event, to Telegram, Slack/Discord or a JSON webhook.

A sidecar (``quantum-exec notify``) reading the streams from cursors kept in Redis: a slow or
unreachable chat API can then never hold up an intent, and a restart resumes where it stopped.
"""
