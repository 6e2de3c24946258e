"""Cloud Functions entry points: each is deployed as its own function from
this one source archive, chosen by ``--entry-point`` / Terraform's
``entry_point``. The local server serves all of them from one process."""

import os

from functions.alerts import alerts_list
from functions.aws_setup_instructions import aws_setup_instructions
from functions.delete import integration_delete
from functions.get import integration_get
from functions.import_integrations import integration_import
from functions.keys import admin_key_rewrap, admin_key_rotate, admin_keys
from functions.list_integrations import integration_list
from functions.oauth_callback import oauth_callback
from functions.oauth_start import oauth_start
from functions.revalidate import integration_revalidate
from functions.rotate import integration_rotate
from functions.setup import integration_setup
from functions.subscriptions import subscription_provider_update, subscription_providers_list
from functions.update import integration_update
from functions.validate import integration_validate
from functions.webhook import webhook_delete, webhook_get, webhook_set
from shared import logs

logs.configure(os.environ.get("LOG_LEVEL", "INFO"))

ENTRY_POINTS = {
    "integration_setup": integration_setup,
    "integration_validate": integration_validate,
    "integration_list": integration_list,
    "integration_get": integration_get,
    "integration_update": integration_update,
    "integration_delete": integration_delete,
    "integration_rotate": integration_rotate,
    "integration_revalidate": integration_revalidate,
    "webhook_set": webhook_set,
    "webhook_get": webhook_get,
    "webhook_delete": webhook_delete,
    "alerts_list": alerts_list,
    "aws_setup_instructions": aws_setup_instructions,
    "oauth_start": oauth_start,
    "oauth_callback": oauth_callback,
    "subscription_providers_list": subscription_providers_list,
    "subscription_provider_update": subscription_provider_update,
    "integration_import": integration_import,
    "admin_keys": admin_keys,
    "admin_key_rotate": admin_key_rotate,
    "admin_key_rewrap": admin_key_rewrap,
}

__all__ = list(ENTRY_POINTS)
