"""A reference cost pipeline: takes the answer of POST .../{provider}/access and reads costs with it.

It shows what each kind of credential is good for, the way the platform's
pipelines use it, with nothing but the answer (credential + config) in hand:

- ``openai`` / ``cost/usage_cost``: the organization's daily costs
  (``GET /v1/organization/costs``) with the admin key;
- ``anthropic`` / ``usage_cost``: the cost report (``GET /v1/organizations/cost_report``);
- ``gcp`` / ``cost/billing``: the Cloud Billing export table in BigQuery
  (``tables.list`` to find it, then one query) with the minted access token;
- ``aws`` / ``cost/billing``: the newest Data Exports (CUR 2.0) manifest and
  the data files it lists, in the export bucket, with the STS session;
- ``azure`` / ``cost/billing``: the Cost Management export at the scope and
  its last successful run (ARM, with the Resource Manager token).

Provider hosts come from the same settings the service reads
(``PROVIDER_<ID>_BASE_URL``, ``AZURE_CA_BUNDLE``), so the demo and the tests
point it at the simulators. Run it on an answer::

    curl -s -X POST $BASE/api/v1/integrations/acme/openai/access -H "X-API-Key: $ADMIN" \\
      -d '{"pipeline": "cost/usage_cost"}' | python -m examples.cost_reader
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

import requests

DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com",
    "anthropic": "https://api.anthropic.com",
    "gcp": "https://bigquery.googleapis.com",
    "azure": "https://management.azure.com",
}
AZURE_EXPORTS_API_VERSION = "2025-03-01"
DAY = 86_400


class CostReadFailed(RuntimeError):
    """The provider refused or failed the read: the credential did not work for the pipeline."""


def base_url(provider: str, environ: Mapping[str, str]) -> str | None:
    return (environ.get(f"PROVIDER_{provider.upper()}_BASE_URL") or DEFAULT_BASE_URLS.get(provider, "")).rstrip(
        "/"
    ) or None


def read_costs(answer: dict[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What the pipeline read with ``answer``'s credential: a small summary (never the credential)."""
    environ = os.environ if environ is None else environ
    provider, pipeline = answer["provider"], answer["pipeline"]
    readers = {
        ("openai", "cost/usage_cost"): _openai_costs,
        ("anthropic", "usage_cost"): _anthropic_costs,
        ("gcp", "cost/billing"): _gcp_billing_export,
        ("aws", "cost/billing"): _aws_cost_export,
        ("azure", "cost/billing"): _azure_cost_export,
    }
    reader = readers.get((provider, pipeline))
    if reader is None:
        raise CostReadFailed(f"this reference pipeline has no reader for {provider} {pipeline}")
    summary = reader(answer["credential"], answer.get("config") or {}, base_url(provider, environ), environ)
    return {"org_slug": answer["org_slug"], "provider": provider, "pipeline": pipeline, **summary}


def _get(url: str, **kwargs: Any) -> Any:
    response = requests.get(url, timeout=30, **kwargs)
    if response.status_code != 200:
        raise CostReadFailed(f"GET {url.split('?')[0]} answered {response.status_code}")
    return response.json()


def _openai_costs(credential: dict[str, Any], config: dict[str, Any], base: str | None, _: Any) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {credential['api_key']}"}
    if config.get("organization_id"):
        headers["OpenAI-Organization"] = config["organization_id"]
    page = _get(
        f"{base}/v1/organization/costs",
        params={"start_time": int(time.time()) - 7 * DAY, "bucket_width": "1d", "limit": 7},
        headers=headers,
    )
    amounts = [result["amount"] for bucket in page["data"] for result in bucket["results"]]
    return {"rows": len(amounts), "total": round(sum(a["value"] for a in amounts), 2), "currency": "usd"}


def _anthropic_costs(credential: dict[str, Any], _: dict[str, Any], base: str | None, __: Any) -> dict[str, Any]:
    start = time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime(time.time() - 7 * DAY))
    report = _get(
        f"{base}/v1/organizations/cost_report",
        params={"starting_at": start, "bucket_width": "1d"},
        headers={"x-api-key": credential["api_key"], "anthropic-version": "2023-06-01"},
    )
    # Amounts are decimal strings in cents.
    amounts = [float(result["amount"]) / 100 for bucket in report["data"] for result in bucket["results"]]
    return {"rows": len(amounts), "total": round(sum(amounts), 2), "currency": "usd"}


def _gcp_billing_export(credential: dict[str, Any], config: dict[str, Any], base: str | None, _: Any) -> dict[str, Any]:
    headers = {"Authorization": f"{credential['token_type']} {credential['access_token']}"}
    project = config["project_id"]
    billing_project = config.get("billing_project_id") or project
    dataset = config["billing_dataset_id"]
    tables = _get(f"{base}/bigquery/v2/projects/{billing_project}/datasets/{dataset}/tables", headers=headers)
    names = sorted(
        t["tableReference"]["tableId"]
        for t in tables.get("tables", [])
        if t["tableReference"]["tableId"].startswith(("gcp_billing_export_v1_", "gcp_billing_export_resource_v1_"))
    )
    if not names:
        raise CostReadFailed(f"no billing export table in {billing_project}.{dataset}")
    query = f"SELECT COUNT(*) AS row_count, SUM(cost) AS total FROM `{billing_project}.{dataset}.{names[0]}`"  # noqa: S608
    response = requests.post(
        f"{base}/bigquery/v2/projects/{project}/queries",
        json={"query": query, "useLegacySql": False, "timeoutMs": 30_000},
        headers=headers,
        timeout=60,
    )
    if response.status_code != 200 or not response.json().get("jobComplete"):
        raise CostReadFailed(f"the billing export query answered {response.status_code}")
    row_count, total = (cell["v"] for cell in response.json()["rows"][0]["f"])
    return {"table": names[0], "rows": int(row_count), "total": round(float(total or 0), 2)}


def _aws_cost_export(credential: dict[str, Any], config: dict[str, Any], base: str | None, _: Any) -> dict[str, Any]:
    import boto3

    s3 = boto3.client(
        "s3",
        region_name=config.get("region", "us-east-1"),
        endpoint_url=base,
        aws_access_key_id=credential["access_key_id"],
        aws_secret_access_key=credential["secret_access_key"],
        aws_session_token=credential["session_token"],
    )
    bucket, prefix = config["export_bucket"], config["export_prefix"].strip("/")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/")
    manifests = sorted(
        (o for o in listed.get("Contents", []) if o["Key"].endswith("-Manifest.json")), key=lambda o: o["LastModified"]
    )
    if not manifests:
        raise CostReadFailed(f"no Data Exports manifest under s3://{bucket}/{prefix}/")
    newest = manifests[-1]["Key"]
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=newest)["Body"].read())
    files = manifest.get("dataFiles", [])
    for key in files:
        s3.head_object(Bucket=bucket, Key=key)  # the pipeline can read every file the manifest lists
    return {"manifest": newest, "data_files": len(files)}


def _azure_cost_export(
    credential: dict[str, Any], config: dict[str, Any], base: str | None, environ: Mapping[str, str]
) -> dict[str, Any]:
    scope = config["scope"]
    exports = _get(
        f"{base}{scope}/providers/Microsoft.CostManagement/exports",
        params={"api-version": AZURE_EXPORTS_API_VERSION, "$expand": "runHistory"},
        headers={"Authorization": f"{credential['token_type']} {credential['access_token']}"},
        verify=environ.get("AZURE_CA_BUNDLE") or True,
    )
    runs = [
        run
        for export in exports.get("value", [])
        for run in (export.get("properties", {}).get("runHistory", {}).get("value") or [])
        if run.get("properties", {}).get("status") == "Completed"
    ]
    if not runs:
        raise CostReadFailed(f"no completed Cost Management export run at {scope}")
    newest = max(runs, key=lambda run: run["properties"].get("processingEndTime", ""))
    return {"exports": len(exports["value"]), "last_run_end": newest["properties"].get("processingEndTime")}


def main() -> int:
    try:
        answer = json.load(sys.stdin)
        if not answer.get("success"):
            print(f"no credential: {answer.get('error')}", file=sys.stderr)
            return 1
        print(json.dumps(read_costs(answer)))
    except (CostReadFailed, requests.RequestException, ValueError, KeyError) as error:
        print(f"cost read failed: {error.__class__.__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
