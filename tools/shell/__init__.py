"""The kernelos shell: an interactive Python session with a device open and the HAL at hand.

session.py holds the device and the preloaded helpers, console.py runs IPython or the standard
console, waiting.py makes every wait end, views.py/hexdump.py format state, stepper.py walks a
loaded image's DAG node by node. `kernelos shell` (tools/commands/shell.py) starts it.
"""
