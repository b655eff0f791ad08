"""The command line: typer commands, the Application each one is handed, output, completion, contexts.

cli.py            the commands and their options only
application.py    the Application: global flags, endpoints, the run's ssh connections, the one exit path
console.py        plain, rich and JSON output
completion.py     cobra's __complete protocol, from command_table.py (generated: tests/harness/command_table.py)
options.py        Docker's global flags; contexts.py: the context store and DOCKER_* rules
compose.py        the images of a Compose project; packaging.py: installing the plugin
"""
