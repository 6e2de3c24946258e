"""What an operator runs, on top of everything: the local server that serves every Cloud Function
and the settings console (``make run``, ``python -m shared.local_server``) and the admin CLI
(``python -m shared.cli``)."""
