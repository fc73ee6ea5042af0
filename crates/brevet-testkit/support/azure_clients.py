"""Microsoft's own Python client (azure-mgmt-authorization 4.0.0, on azure-core) against the
Azure authorization stand-in (brevet_testkit::azure::FakeAzure).
Usage: azure_clients.py URL SUBSCRIPTION PRINCIPAL TOKEN. Expects the tenant of tests/fake_azure.rs
(resource group rg1; PRINCIPAL a known User; TOKEN acting as a principal holding User Access
Administrator on the subscription). Prints one JSON summary line last.

azure-core refuses to send a bearer token over plain http ("Bearer token authentication is not
permitted for non-TLS protected (non-https) URLs."). The opt-out is the per-request option
`enforce_https=False`, which the bearer policy reads from the request's context options; the
client below installs ARM's own challenge policy with that option set on every request, through
the client's `authentication_policy` keyword, instead of passing it to every call.
"""

import json
import sys
import time
import uuid

from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ServiceRequestError
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.v2020_10_01 import models as pim
from azure.mgmt.authorization.v2022_04_01 import models as rbac
from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy

URL, SUB, PRINCIPAL, TOKEN = sys.argv[1:5]
URL = URL.rstrip("/")
ARM_SCOPE = "https://management.azure.com/.default"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
summary = {}


class StaticToken:
    """A TokenCredential that always returns FakeAzure.token_for(...) of the caller."""

    def __init__(self, token):
        self._token = token

    def get_token(self, *scopes, **kwargs):
        return AccessToken(self._token, int(time.time()) + 3600)


class ArmOverHttp(ARMChallengeAuthenticationPolicy):
    """ARM's bearer policy, allowed to send the token over http (the stand-in has no TLS)."""

    def on_request(self, request):
        request.context.options["enforce_https"] = False
        super().on_request(request)


credential = StaticToken(TOKEN)
client = AuthorizationManagementClient(
    credential, SUB, base_url=URL,
    authentication_policy=ArmOverHttp(credential, ARM_SCOPE))
rg = f"/subscriptions/{SUB}/resourceGroups/rg1"
reader_id = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{READER}"

# Without the opt-out azure-core refuses to talk to the stand-in at all.
plain = AuthorizationManagementClient(credential, SUB, base_url=URL)
try:
    plain.role_assignments.get(rg, str(uuid.uuid4()))
    summary["http_enforced_without_opt_out"] = False
except ServiceRequestError:
    summary["http_enforced_without_opt_out"] = True

# Role assignments: create, list (inherited + own, one per page), duplicate under a new name, delete twice.
name = str(uuid.uuid4())
params = rbac.RoleAssignmentCreateParameters(
    role_definition_id=reader_id, principal_id=PRINCIPAL, principal_type="User")
created = client.role_assignments.create(rg, name, params)
summary["created_status"] = "ok" if created.name == name and created.scope == rg else repr(created)
listed = list(client.role_assignments.list_for_scope(rg, filter="atScope()"))
summary["listed"] = any(a.name == name for a in listed)
summary["listed_pages_followed"] = len(listed) >= 2
try:
    client.role_assignments.create(rg, str(uuid.uuid4()), params)
    summary["duplicate_error"] = None
except HttpResponseError as e:
    summary["duplicate_error"] = e.error.code if e.error else str(e)
deleted = client.role_assignments.delete(rg, name)
summary["deleted"] = deleted is not None and deleted.name == name
again = client.role_assignments.delete(rg, name)
summary["deleted_again"] = None if again is None else again.name

# A custom role: create, read, delete.
role_guid = str(uuid.uuid4())
role = client.role_definitions.create_or_update(
    f"/subscriptions/{SUB}", role_guid,
    rbac.RoleDefinition(
        role_name="Brevet py role", description="from azure_clients.py", role_type="CustomRole",
        permissions=[rbac.Permission(actions=["Microsoft.Storage/storageAccounts/read"])],
        assignable_scopes=[f"/subscriptions/{SUB}"]))
summary["custom_role_type"] = client.role_definitions.get(f"/subscriptions/{SUB}", role_guid).role_type
summary["custom_role_deleted"] = client.role_definitions.delete(f"/subscriptions/{SUB}", role_guid) is not None

# PIM: an AdminAssign for an hour, read back, its instance listed.
request_name = str(uuid.uuid4())
request = client.role_assignment_schedule_requests.create(
    rg, request_name,
    pim.RoleAssignmentScheduleRequest(
        principal_id=PRINCIPAL, role_definition_id=reader_id, request_type="AdminAssign",
        justification="azure_clients.py",
        ticket_info=pim.RoleAssignmentScheduleRequestPropertiesTicketInfo(ticket_number="1", ticket_system="py"),
        schedule_info=pim.RoleAssignmentScheduleRequestPropertiesScheduleInfo(
            expiration=pim.RoleAssignmentScheduleRequestPropertiesScheduleInfoExpiration(
                type="AfterDuration", duration="PT1H"))))
summary["pim_status"] = request.status
read = client.role_assignment_schedule_requests.get(rg, request_name)
summary["pim_read_back"] = read.name == request_name and read.target_role_assignment_schedule_id is not None
instances = list(client.role_assignment_schedule_instances.list_for_scope(rg, filter=f"principalId eq '{PRINCIPAL}'"))
summary["pim_instances"] = len(instances)

# Permissions of the caller on the resource group.
perms = list(client.permissions.list_for_resource_group("rg1"))
summary["permissions_include_write"] = any(
    a.lower().startswith("microsoft.authorization/") for p in perms for a in (p.actions or []))

print(json.dumps(summary))
