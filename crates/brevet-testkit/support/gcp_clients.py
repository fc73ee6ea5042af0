"""Google's own Python client (google-api-python-client, static discovery documents) against the
GCP IAM stand-in (brevet_testkit::gcp::FakeGcp). Usage: gcp_clients.py URL. Expects the
hierarchy of tests/fake_gcp.rs (project p1, bucket b1 of p1). Prints one JSON summary line last.

The client replaces rootUrl *and* servicePath with api_endpoint, so Storage (servicePath
"storage/v1/") needs URL + "/storage/v1/".
"""

import json
import sys

import google.auth.credentials
import google.oauth2.credentials
import googleapiclient.discovery
import googleapiclient.errors

URL = sys.argv[1].rstrip("/")
summary = {}


def client(api, version, endpoint=URL):
    return googleapiclient.discovery.build(
        api,
        version,
        static_discovery=True,
        credentials=google.auth.credentials.AnonymousCredentials(),
        client_options={"api_endpoint": endpoint},
    )


def status_of(request):
    try:
        request.execute()
    except googleapiclient.errors.HttpError as e:
        return e.resp.status, e
    return 200, None


crm1 = client("cloudresourcemanager", "v1")
crm3 = client("cloudresourcemanager", "v3")
iam = client("iam", "v1")
# Storage calls act as user:py@example.com: a static bearer token in FakeGcp.token_for's form.
storage = googleapiclient.discovery.build(
    "storage", "v1", static_discovery=True,
    credentials=google.oauth2.credentials.Credentials(token="member:user:py@example.com"),
    client_options={"api_endpoint": URL + "/storage/v1/"})

# A conditional binding: read v3, append, set, read back (v3 API).
expression = 'request.time < timestamp("2030-01-01T00:00:00Z")'
policy = crm3.projects().getIamPolicy(
    resource="projects/p1", body={"options": {"requestedPolicyVersion": 3}}).execute()
stale_etag = policy["etag"]
policy["version"] = 3
policy.setdefault("bindings", []).append({
    "role": "roles/storage.objectViewer",
    "members": ["user:py@example.com"],
    "condition": {"title": "JIT access activation", "expression": expression},
})
crm3.projects().setIamPolicy(resource="projects/p1", body={"policy": policy}).execute()
back = crm1.projects().getIamPolicy(
    resource="p1", body={"options": {"requestedPolicyVersion": 3}}).execute()
summary["conditional_binding"] = back["bindings"][0]["condition"]
summary["conditional_version"] = back["version"]
# The etag read before that write is stale now.
policy["etag"] = stale_etag
status, _ = status_of(crm1.projects().setIamPolicy(resource="p1", body={"policy": policy}))
summary["stale_etag_status"] = status
crm1.projects().get(projectId="p1").execute()

# Custom roles: create, get, delete (hidden from list, listed with showDeleted), undelete.
roles = iam.projects().roles()
created = roles.create(parent="projects/p1", body={"roleId": "brevet_py", "role": {
    "title": "Brevet py", "includedPermissions": ["storage.objects.get"], "stage": "GA"}}).execute()
summary["role_created"] = created["name"]
roles.get(name=created["name"]).execute()
roles.delete(name=created["name"]).execute()
listed = roles.list(parent="projects/p1").execute().get("roles", [])
summary["role_hidden_when_deleted"] = all(r["name"] != created["name"] for r in listed)
listed = roles.list(parent="projects/p1", showDeleted=True, view="FULL").execute().get("roles", [])
summary["role_listed_deleted"] = any(r["name"] == created["name"] and r.get("deleted") for r in listed)
undeleted = roles.undelete(name=created["name"], body={}).execute()
summary["role_undeleted"] = not undeleted.get("deleted", False)
status, error = status_of(roles.create(parent="projects/p1", body={"roleId": "brevet_bad", "role": {
    "title": "bad", "includedPermissions": ["storage.objects.fly"]}}))
summary["invalid_permission"] = json.loads(error.content)["error"]["message"] if error else None
urllib_request = __import__("urllib.request").request
urllib_request.urlopen(urllib_request.Request(
    URL + "/_fake/role-quota", data=b'{"quota": 1}', method="POST")).read()
status, _ = status_of(roles.create(parent="projects/p1", body={"roleId": "brevet_more", "role": {
    "title": "more", "includedPermissions": ["storage.objects.get"]}}))
summary["quota_status"] = status

# Cloud Storage bucket IAM: read v3, add a member, write, read back, testPermissions, 412.
buckets = storage.buckets()
bucket_policy = buckets.getIamPolicy(bucket="b1", optionsRequestedPolicyVersion=3).execute()
summary["bucket_policy_kind"] = bucket_policy.get("kind")
old_etag = bucket_policy["etag"]
bucket_policy["bindings"].append({"role": "roles/storage.objectViewer", "members": ["user:py@example.com"]})
buckets.setIamPolicy(bucket="b1", body=bucket_policy).execute()
again = buckets.getIamPolicy(bucket="b1").execute()
summary["bucket_member_round_trip"] = any(
    "user:py@example.com" in b["members"] for b in again["bindings"])
tested = buckets.testIamPermissions(
    bucket="b1", permissions=["storage.objects.get", "storage.objects.delete"]).execute()
summary["bucket_test_permissions"] = tested.get("permissions", [])
bucket_policy["etag"] = old_etag
status, _ = status_of(buckets.setIamPolicy(bucket="b1", body=bucket_policy))
summary["bucket_stale_status"] = status

print(json.dumps(summary))
