"""One module per Cloud Function; each entry point is a thin HTTP adapter over
``shared.usecases.integrations``. ``main.py`` re-exports them for Cloud Functions."""
