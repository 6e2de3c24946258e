"""SaaS subscriptions: the registry's SaaS catalog with each organization's toggles.

An organization says which SaaS tools it pays for (the frontend's Settings >
Integrations > Subscriptions page). The catalog is the registry's
``category: saas`` entries; the toggles live in
``saas_subscription_providers_meta``, a tool without a row is off. A toggle
and an API integration are separate records on purpose: switching a tool off
keeps its integration and encrypted credential (only DELETE on the
integration removes them), and deleting the integration keeps the toggle.
Each operation is one store job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.domain.errors import BadRequest, UnknownProvider
from shared.domain.models import SubscriptionToggle, iso
from shared.domain.providers import SAAS_CATEGORIES, ProviderSpec

if TYPE_CHECKING:
    from shared.domain.caller import Caller
    from shared.usecases.integrations import IntegrationService


def saas_catalog(service: IntegrationService) -> list[ProviderSpec]:
    """Every SaaS tool, grouped by the Subscriptions page's categories (registry order within one)."""
    tools = [spec for spec in service.registry.providers.values() if spec.category == "saas"]
    return sorted(tools, key=lambda spec: SAAS_CATEGORIES.index(spec.saas_category or SAAS_CATEGORIES[0]))


def _saas_tool(service: IntegrationService, provider_id: str) -> ProviderSpec:
    spec = service.registry.get(provider_id)
    if spec is None or spec.category != "saas":
        known = ", ".join(spec.provider_id for spec in saas_catalog(service))
        raise UnknownProvider(f"Unknown SaaS provider; SaaS providers: {known}")  # the name sent is not repeated
    return spec


def _info(spec: ProviderSpec, toggle: SubscriptionToggle | None, integration_status: str | None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "provider": spec.provider_id,
        "display_name": spec.display_name,
        "saas_category": spec.saas_category,
        "enabled": bool(toggle and toggle.enabled),
        "connection": spec.connection,
    }
    if integration_status is not None:
        info["integration_status"] = integration_status
    if toggle is not None:
        info.update(updated_at=iso(toggle.updated_at), updated_by=toggle.updated_by)
    return info


def list_subscription_providers(service: IntegrationService, caller: Caller) -> list[dict[str, Any]]:
    """The whole catalog with this org's toggles (never touched = off) and integration statuses."""
    toggles, statuses = service.adapters.store.list_subscription_toggles(caller.org_slug)
    by_provider = {toggle.provider: toggle for toggle in toggles}
    return [
        _info(spec, by_provider.get(spec.provider_id), statuses.get(spec.provider_id)) for spec in saas_catalog(service)
    ]


def set_subscription_provider(
    service: IntegrationService, caller: Caller, provider_id: str, enabled: Any
) -> tuple[dict[str, Any], str]:
    """Switch a tool on or off for the org (idempotent, audited); returns its entry and a message."""
    spec = _saas_tool(service, provider_id)
    if not isinstance(enabled, bool):
        raise BadRequest("Field 'enabled' must be true or false")
    toggle = SubscriptionToggle(
        org_slug=caller.org_slug,
        provider=spec.provider_id,
        enabled=enabled,
        created_by=caller.actor,
        updated_by=caller.actor,
        updated_by_key_id=caller.key_id,
    )
    toggle.updated_at = toggle.created_at
    audit = caller.audit(
        caller.org_slug, spec.provider_id, "subscription_enable" if enabled else "subscription_disable"
    )
    stored, changed, integration_status = service.adapters.store.set_subscription_toggle(toggle, audit)
    state = "on" if stored.enabled else "off"
    message = f"{spec.display_name} is {state} for this organization" + ("" if changed else " (unchanged)")
    if not stored.enabled and integration_status is not None:
        message += (
            f"; its API integration and stored credential are kept"
            f" (DELETE /api/v1/integrations/{caller.org_slug}/{spec.provider_id} removes them)"
        )
    return _info(spec, stored, integration_status), message
