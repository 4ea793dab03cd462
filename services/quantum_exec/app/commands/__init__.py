"""The ``quantum-exec`` subcommands, one module per group; each exposes ``add_commands(sub)``.

``quantum_exec.app.cli`` lists the modules (``COMMAND_MODULES``) and builds the parser from them;
``quantum_exec.app.commands.common`` holds what every command shares (settings, the event loop).
"""
