//! The Azure authorization stand-in through its HTTP surface, as a client sees it: role
//! assignments, custom roles, Azure's access rule, PIM schedules at a controllable clock, paging,
//! throttling, tokens — then Microsoft's own Python client against it (a client nobody here wrote).

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    time::Duration,
};

use brevet_testkit::azure::{FakeAzure, MS_PIM_OBJECT_ID, TENANT_ID};
use serde_json::{json, Value};

const SUB: &str = "9b1c0c3e-1f6a-4c1e-9a36-2f7b5d0a1c01";
const OTHER_SUB: &str = "9b1c0c3e-1f6a-4c1e-9a36-2f7b5d0a1c02";
const ALICE: &str = "a11ce000-0000-4000-8000-000000000001";
const BOB: &str = "b0b00000-0000-4000-8000-000000000002";
const BREVET_SP: &str = "5e7a1ce0-0000-4000-8000-000000000003";
const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
const USER_ACCESS_ADMIN: &str = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9";
const BLOB_READER: &str = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1";
const RBAC: &str = "api-version=2022-04-01";
const PIM: &str = "api-version=2020-10-01";

struct Reply {
    status: u16,
    head: String,
    body: Value,
}

fn call_raw(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    content_type: &str,
) -> Reply {
    let host = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let body = body.unwrap_or("");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        head += &format!("Authorization: Bearer {t}\r\n");
    }
    write!(stream, "{head}\r\n{body}").unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read");
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    Reply {
        status,
        head: head.to_owned(),
        body: serde_json::from_str(body).unwrap_or(Value::Null),
    }
}

fn call(
    fake: &FakeAzure,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let r = call_raw(
        &fake.url,
        method,
        path,
        token,
        body.map(|b| b.to_string()).as_deref(),
        "application/json",
    );
    (r.status, r.body)
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

fn tenant() -> FakeAzure {
    let fake = FakeAzure::start();
    fake.add_management_group("root-mg", None);
    fake.add_management_group("mg1", Some("root-mg"));
    fake.add_subscription(SUB, Some("mg1"));
    fake.add_subscription(OTHER_SUB, None);
    fake.add_resource_group(SUB, "rg1");
    fake.add_resource_group(SUB, "rg2");
    fake.add_principal(ALICE, "User");
    fake.add_principal(BOB, "User");
    fake.add_principal(BREVET_SP, "ServicePrincipal");
    fake
}

fn sub_scope() -> String {
    format!("/subscriptions/{SUB}")
}

fn rg_scope() -> String {
    format!("/subscriptions/{SUB}/resourceGroups/rg1")
}

fn role_id(guid: &str) -> String {
    format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{guid}")
}

fn assignment_body(principal: &str, role: &str, principal_type: Option<&str>) -> Value {
    let mut p = json!({"roleDefinitionId": role_id(role), "principalId": principal});
    if let Some(t) = principal_type {
        p["principalType"] = json!(t);
    }
    json!({"properties": p})
}

fn put_assignment(fake: &FakeAzure, scope: &str, name: &str, body: &Value) -> (u16, Value) {
    call(
        fake,
        "PUT",
        &format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}?{RBAC}"),
        None,
        Some(body),
    )
}

const G1: &str = "11111111-1111-4111-8111-111111111111";
const G2: &str = "22222222-2222-4222-8222-222222222222";
const G3: &str = "33333333-3333-4333-8333-333333333333";

#[test]
fn role_assignments_follow_arms_contract() {
    let fake = tenant();
    let rg = rg_scope();
    let (s, a) = put_assignment(&fake, &rg, G1, &assignment_body(ALICE, READER, None));
    assert_eq!(s, 201, "{a}");
    assert_eq!(
        a["id"],
        json!(format!(
            "{rg}/providers/Microsoft.Authorization/roleAssignments/{G1}"
        ))
    );
    assert_eq!(a["type"], "Microsoft.Authorization/roleAssignments");
    assert_eq!(a["properties"]["scope"], json!(rg));
    assert_eq!(a["properties"]["principalType"], "User");
    assert_eq!(a["properties"]["roleDefinitionId"], json!(role_id(READER)));
    // The same again: 200; the same principal+role+scope under another name: 409.
    assert_eq!(
        put_assignment(&fake, &rg, G1, &assignment_body(ALICE, READER, None)).0,
        200
    );
    let (s, e) = put_assignment(&fake, &rg, G2, &assignment_body(ALICE, READER, None));
    assert_eq!((s, code(&e)), (409, "RoleAssignmentExists"));
    assert_eq!(e["error"]["message"], "The role assignment already exists.");
    // The name reused for another principal or role.
    let (s, e) = put_assignment(&fake, &rg, G1, &assignment_body(BOB, READER, None));
    assert_eq!((s, code(&e)), (400, "RoleAssignmentUpdateNotPermitted"));
    // Case-insensitive path segments, the id in canonical spelling.
    let (s, got) = call(
        &fake,
        "GET",
        &format!("/SUBSCRIPTIONS/{SUB}/resourcegroups/RG1/providers/microsoft.authorization/roleassignments/{G1}?{RBAC}"),
        None,
        None,
    );
    assert_eq!((s, &got["id"]), (200, &a["id"]));
    // Unknown principal: PrincipalNotFound unless principalType says what it is.
    let ghost = "0badf00d-0000-4000-8000-000000000000";
    let (s, e) = put_assignment(&fake, &rg, G2, &assignment_body(ghost, READER, None));
    assert_eq!((s, code(&e)), (400, "PrincipalNotFound"), "{e}");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("principalType"));
    assert_eq!(
        put_assignment(
            &fake,
            &rg,
            G2,
            &assignment_body(ghost, READER, Some("ServicePrincipal"))
        )
        .0,
        201
    );
    // Replication delay: the next n PUTs for the principal fail, then it works.
    fake.replication_delay(BOB, 2);
    for _ in 0..2 {
        let (s, e) = put_assignment(&fake, &rg, G3, &assignment_body(BOB, READER, Some("User")));
        assert_eq!((s, code(&e)), (400, "PrincipalNotFound"));
    }
    assert_eq!(
        put_assignment(&fake, &rg, G3, &assignment_body(BOB, READER, Some("User"))).0,
        201
    );
    let (s, e) = put_assignment(&fake, &rg, G3, &assignment_body(BOB, READER, Some("Group")));
    assert_eq!((s, code(&e)), (400, "UnmatchedPrincipalType"));
    // Bad role definitions and names.
    let missing_role = "deadbeef-0000-4000-8000-000000000000";
    let (s, e) = put_assignment(
        &fake,
        &rg,
        "44444444-4444-4444-8444-444444444444",
        &assignment_body(BOB, missing_role, None),
    );
    assert_eq!((s, code(&e)), (400, "InvalidRoleDefinitionId"));
    let (s, e) = put_assignment(
        &fake,
        &rg,
        "not-a-guid",
        &assignment_body(BOB, CONTRIBUTOR, None),
    );
    assert_eq!((s, code(&e)), (400, "InvalidRoleAssignmentId"));
    // Unknown subscription / resource group; a resource below an existing group needs no registration.
    let (s, e) = put_assignment(
        &fake,
        "/subscriptions/00000000-0000-0000-0000-000000000000",
        G2,
        &assignment_body(BOB, READER, None),
    );
    assert_eq!((s, code(&e)), (404, "SubscriptionNotFound"));
    let (s, e) = put_assignment(
        &fake,
        &format!("/subscriptions/{SUB}/resourceGroups/nope"),
        G2,
        &assignment_body(BOB, READER, None),
    );
    assert_eq!((s, code(&e)), (404, "ResourceGroupNotFound"));
    let account = format!(
        "{rg}/providers/Microsoft.Storage/storageAccounts/sa1/blobServices/default/containers/c1"
    );
    assert_eq!(
        put_assignment(
            &fake,
            &account,
            "55555555-5555-4555-8555-555555555555",
            &assignment_body(BOB, BLOB_READER, None)
        )
        .0,
        201
    );
    // api-version is required and must be the one the resource type serves.
    let path = format!("{rg}/providers/Microsoft.Authorization/roleAssignments/{G1}");
    let (s, e) = call(&fake, "GET", &path, None, None);
    assert_eq!((s, code(&e)), (400, "MissingApiVersionParameter"));
    let (s, e) = call(
        &fake,
        "GET",
        &format!("{path}?api-version=2015-07-01"),
        None,
        None,
    );
    assert_eq!((s, code(&e)), (400, "NoRegisteredProviderFound"));
    let (s, e) = call(
        &fake,
        "GET",
        &format!("{path}?api-version=latest"),
        None,
        None,
    );
    assert_eq!((s, code(&e)), (400, "InvalidApiVersionParameter"));
    // DELETE: 200 with the body, then 204.
    let (s, d) = call(&fake, "DELETE", &format!("{path}?{RBAC}"), None, None);
    assert_eq!((s, &d["name"]), (200, &json!(G1)));
    let r = call_raw(
        &fake.url,
        "DELETE",
        &format!("{path}?{RBAC}"),
        None,
        None,
        "application/json",
    );
    assert_eq!(r.status, 204);
    let (s, e) = call(&fake, "GET", &format!("{path}?{RBAC}"), None, None);
    assert_eq!((s, code(&e)), (404, "RoleAssignmentNotFound"));
    assert_eq!(fake.assignments().len(), 3);
}

#[test]
fn lists_follow_scope_filters_and_page_by_next_link() {
    let fake = tenant();
    fake.put_assignment(
        "/providers/Microsoft.Management/managementGroups/root-mg",
        ALICE,
        READER,
        None,
    );
    fake.put_assignment(&sub_scope(), BOB, READER, Some("standing"));
    fake.put_assignment(&rg_scope(), ALICE, CONTRIBUTOR, None);
    fake.put_assignment(
        &format!("/subscriptions/{SUB}/resourceGroups/rg2"),
        BOB,
        CONTRIBUTOR,
        None,
    );
    fake.put_assignment(
        &format!("{}/providers/Microsoft.KeyVault/vaults/kv1", rg_scope()),
        BOB,
        OWNER,
        None,
    );
    fake.put_assignment(&format!("/subscriptions/{OTHER_SUB}"), ALICE, OWNER, None);
    fake.set_page_size(2);
    let list = |scope: &str, filter: Option<&str>| -> Vec<Value> {
        let mut url = format!("{scope}/providers/Microsoft.Authorization/roleAssignments?{RBAC}");
        if let Some(f) = filter {
            url += &format!("&$filter={}", f.replace(' ', "%20").replace('\'', "%27"));
        }
        let mut all = Vec::new();
        let mut pages = 0;
        loop {
            let (s, page) = call(&fake, "GET", &url, None, None);
            assert_eq!(s, 200, "{page}");
            pages += 1;
            let value = page["value"].as_array().unwrap();
            assert!(value.len() <= 2);
            all.extend(value.iter().cloned());
            match page["nextLink"].as_str() {
                Some(next) => {
                    url = next
                        .strip_prefix(&fake.url)
                        .expect("nextLink on this host")
                        .to_owned()
                }
                None => break,
            }
            assert!(pages < 10);
        }
        all
    };
    let scopes = |v: &[Value]| -> Vec<String> {
        let mut s: Vec<String> = v
            .iter()
            .map(|a| a["properties"]["scope"].as_str().unwrap().to_owned())
            .collect();
        s.sort();
        s
    };
    // No filter: at, above and below the subscription (not the other subscription).
    assert_eq!(list(&sub_scope(), None).len(), 5);
    // atScope(): at or above only.
    assert_eq!(
        scopes(&list(&sub_scope(), Some("atScope()"))),
        vec![
            "/providers/Microsoft.Management/managementGroups/root-mg".to_owned(),
            sub_scope()
        ]
    );
    // From the resource group: inherited ones plus its own and its resources'.
    assert_eq!(list(&rg_scope(), None).len(), 4);
    assert_eq!(list(&rg_scope(), Some("atScope()")).len(), 3);
    // principalId eq: at, above or below, for that principal.
    let bobs = list(&sub_scope(), Some(&format!("principalId eq '{BOB}'")));
    assert_eq!(bobs.len(), 3);
    assert!(bobs.iter().all(|a| a["properties"]["principalId"] == BOB));
    let (s, e) = call(
        &fake,
        "GET",
        &format!(
            "{}/providers/Microsoft.Authorization/roleAssignments?{RBAC}&$filter=nonsense",
            sub_scope()
        ),
        None,
        None,
    );
    assert_eq!((s, code(&e)), (400, "UnsupportedQuery"));
    let (s, e) = call(
        &fake,
        "GET",
        &format!(
            "{}/providers/Microsoft.Authorization/roleAssignments?{RBAC}&$skipToken=x",
            sub_scope()
        ),
        None,
        None,
    );
    assert_eq!((s, code(&e)), (400, "InvalidSkipToken"));
}

#[test]
fn assignment_limits_count_the_whole_subscription_and_each_management_group() {
    let fake = tenant();
    fake.set_assignment_limits(2, 1);
    assert_eq!(
        put_assignment(
            &fake,
            &sub_scope(),
            G1,
            &assignment_body(ALICE, READER, None)
        )
        .0,
        201
    );
    assert_eq!(
        put_assignment(&fake, &rg_scope(), G2, &assignment_body(BOB, READER, None)).0,
        201
    );
    let (s, e) = put_assignment(
        &fake,
        &format!(
            "{}/providers/Microsoft.Compute/virtualMachines/vm1",
            rg_scope()
        ),
        G3,
        &assignment_body(BOB, READER, None),
    );
    assert_eq!((s, code(&e)), (400, "RoleAssignmentLimitExceeded"), "{e}");
    // Another subscription has its own count; an update of an existing one is no new assignment.
    assert_eq!(
        put_assignment(
            &fake,
            &format!("/subscriptions/{OTHER_SUB}"),
            G3,
            &assignment_body(BOB, READER, None)
        )
        .0,
        201
    );
    assert_eq!(
        put_assignment(
            &fake,
            &sub_scope(),
            G1,
            &assignment_body(ALICE, READER, None)
        )
        .0,
        200
    );
    let mg = "/providers/Microsoft.Management/managementGroups/mg1";
    assert_eq!(
        put_assignment(
            &fake,
            mg,
            "66666666-6666-4666-8666-666666666666",
            &assignment_body(ALICE, READER, None)
        )
        .0,
        201
    );
    let (s, e) = put_assignment(
        &fake,
        mg,
        "77777777-7777-4777-8777-777777777777",
        &assignment_body(BOB, READER, None),
    );
    assert_eq!((s, code(&e)), (400, "RoleAssignmentLimitExceeded"));
}

fn put_role(fake: &FakeAzure, guid: &str, props: Value) -> (u16, Value) {
    call(
        fake,
        "PUT",
        &format!(
            "{}/providers/Microsoft.Authorization/roleDefinitions/{guid}?{RBAC}",
            sub_scope()
        ),
        None,
        Some(&json!({"properties": props})),
    )
}

fn custom_role(name: &str, actions: &[&str], data: &[&str], scopes: &[&str]) -> Value {
    json!({"roleName": name, "description": "d", "type": "CustomRole",
        "permissions": [{"actions": actions, "notActions": [], "dataActions": data, "notDataActions": []}],
        "assignableScopes": scopes})
}

#[test]
fn custom_roles_follow_azures_rules() {
    let fake = tenant();
    let sub = sub_scope();
    let mg = "/providers/Microsoft.Management/managementGroups/mg1";
    let (s, r) = put_role(
        &fake,
        G1,
        custom_role(
            "Brevet reader",
            &["Microsoft.Storage/storageAccounts/read"],
            &[],
            &[&rg_scope()],
        ),
    );
    assert_eq!(s, 201, "{r}");
    assert_eq!(r["properties"]["type"], "CustomRole");
    assert_eq!(r["id"], json!(role_id(G1)));
    // An update answers 201 too (the generated clients accept nothing else).
    assert_eq!(
        put_role(
            &fake,
            G1,
            custom_role(
                "Brevet reader",
                &["Microsoft.Storage/*/read"],
                &[],
                &[&rg_scope()]
            )
        )
        .0,
        201
    );
    let refusals = [
        (
            custom_role("brevet READER", &["*/read"], &[], &[&sub]),
            409,
            "RoleDefinitionWithSameNameExists",
        ),
        (
            custom_role("Reader", &["*/read"], &[], &[&sub]),
            409,
            "RoleDefinitionWithSameNameExists",
        ),
        (
            custom_role(&"x".repeat(129), &["*/read"], &[], &[&sub]),
            400,
            "InvalidRoleDefinitionName",
        ),
        (
            custom_role(
                "two mgs",
                &["*/read"],
                &[],
                &[
                    mg,
                    "/providers/Microsoft.Management/managementGroups/root-mg",
                ],
            ),
            400,
            "InvalidAssignableScopes",
        ),
        (
            custom_role(
                "mg data",
                &[],
                &["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"],
                &[mg],
            ),
            400,
            "InvalidAssignableScopes",
        ),
        (
            custom_role("root", &["*/read"], &[], &["/"]),
            400,
            "InvalidAssignableScopes",
        ),
        (
            custom_role("no scopes", &["*/read"], &[], &[]),
            400,
            "InvalidAssignableScopes",
        ),
        (
            custom_role(
                "bad action",
                &["Microsoft.Storage/storageAccounts/fly"],
                &[],
                &[&sub],
            ),
            400,
            "InvalidActionOrNotAction",
        ),
        (
            custom_role("bad pattern", &["Microsoft.Nothing/*"], &[], &[&sub]),
            400,
            "InvalidActionOrNotAction",
        ),
        (
            custom_role(
                "control as data",
                &[],
                &["Microsoft.Storage/storageAccounts/read"],
                &[&sub],
            ),
            400,
            "InvalidDataActionOrNotDataAction",
        ),
        (
            custom_role(
                "missing sub",
                &["*/read"],
                &[],
                &["/subscriptions/00000000-0000-0000-0000-000000000000"],
            ),
            404,
            "SubscriptionNotFound",
        ),
    ];
    for (i, (props, status, want)) in refusals.iter().enumerate() {
        let (s, e) = put_role(&fake, G2, props.clone());
        assert_eq!((s, code(&e)), (*status, *want), "refusal {i}: {e}");
    }
    let mut long = custom_role("long description", &["*/read"], &[], &[&sub]);
    long["description"] = json!("d".repeat(2_049));
    assert_eq!(
        code(&put_role(&fake, G2, long).1),
        "InvalidRoleDefinitionDescription"
    );
    let (_, e) = put_role(
        &fake,
        G2,
        custom_role(
            "mg data",
            &[],
            &["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"],
            &[mg],
        ),
    );
    assert_eq!(
        e["error"]["message"],
        "You cannot add data action permissions when you have a management group as an assignable scope"
    );
    // A management group alone, wildcard patterns that match known operations: fine.
    assert_eq!(
        put_role(
            &fake,
            G2,
            custom_role(
                "mg role",
                &["Microsoft.Compute/virtualMachines/*"],
                &[],
                &[mg]
            )
        )
        .0,
        201
    );
    // Assignable only where assignableScopes reach.
    let (s, e) = put_assignment(&fake, &sub, G3, &assignment_body(ALICE, G1, None));
    assert_eq!(
        (s, code(&e)),
        (400, "InvalidCreateRoleAssignmentRequest"),
        "{e}"
    );
    assert_eq!(
        put_assignment(&fake, &rg_scope(), G3, &assignment_body(ALICE, G1, None)).0,
        201
    );
    // Listing: custom ones by type, by name; built-in ones under any scope.
    let (_, listed) = call(
        &fake,
        "GET",
        &format!("{}/providers/Microsoft.Authorization/roleDefinitions?{RBAC}&$filter=type%20eq%20%27CustomRole%27", rg_scope()),
        None,
        None,
    );
    let names: Vec<&str> = listed["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["properties"]["roleName"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let (_, listed) = call(
        &fake,
        "GET",
        &format!("{sub}/providers/Microsoft.Authorization/roleDefinitions?{RBAC}&$filter=roleName%20eq%20%27Reader%27"),
        None,
        None,
    );
    assert_eq!(listed["value"][0]["name"], READER);
    assert_eq!(listed["value"][0]["properties"]["type"], "BuiltInRole");
    let (s, r) = call(
        &fake,
        "GET",
        &format!("/providers/Microsoft.Authorization/roleDefinitions/{OWNER}?{RBAC}"),
        None,
        None,
    );
    assert_eq!(
        (s, r["properties"]["roleName"].as_str()),
        (200, Some("Owner"))
    );
    assert_eq!(
        r["id"],
        json!(format!(
            "/providers/Microsoft.Authorization/roleDefinitions/{OWNER}"
        ))
    );
    // Deleting: blocked while assigned, then 200, then 204.
    let path = format!("{sub}/providers/Microsoft.Authorization/roleDefinitions/{G1}?{RBAC}");
    let (s, e) = call(&fake, "DELETE", &path, None, None);
    assert_eq!((s, code(&e)), (409, "RoleDefinitionHasAssignments"));
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("There are existing role assignments referencing role"));
    call(
        &fake,
        "DELETE",
        &format!(
            "{}/providers/Microsoft.Authorization/roleAssignments/{G3}?{RBAC}",
            rg_scope()
        ),
        None,
        None,
    );
    assert_eq!(call(&fake, "DELETE", &path, None, None).0, 200);
    assert_eq!(
        call_raw(&fake.url, "DELETE", &path, None, None, "application/json").status,
        204
    );
    assert_eq!(fake.role_definitions().len(), 1);
    // The tenant's custom-role limit.
    fake.set_custom_role_limit(1);
    let (s, e) = put_role(
        &fake,
        G1,
        custom_role("one more", &["*/read"], &[], &[&sub]),
    );
    assert_eq!((s, code(&e)), (400, "RoleDefinitionLimitExceeded"));
}

#[test]
fn access_follows_azures_rule() {
    let fake = tenant();
    let rg = rg_scope();
    let vm = format!("{rg}/providers/Microsoft.Compute/virtualMachines/vm1");
    let container = format!(
        "{rg}/providers/Microsoft.Storage/storageAccounts/sa1/blobServices/default/containers/c1"
    );
    let blob_read = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read";
    // Reader on the management group reaches every resource below it, for reads only.
    fake.put_assignment(
        "/providers/Microsoft.Management/managementGroups/root-mg",
        ALICE,
        READER,
        None,
    );
    assert!(fake.check_access(ALICE, "Microsoft.Compute/virtualMachines/read", &vm));
    assert!(fake.check_access(ALICE, "microsoft.compute/VIRTUALMACHINES/read", &vm));
    assert!(!fake.check_access(ALICE, "Microsoft.Compute/virtualMachines/write", &vm));
    assert!(
        !fake.check_access(ALICE, blob_read, &container),
        "Reader has no data actions"
    );
    assert!(!fake.check_access(
        ALICE,
        "Microsoft.Compute/virtualMachines/read",
        &format!("/subscriptions/{OTHER_SUB}")
    ));
    // Contributor: `*` minus its notActions (role assignments among them).
    fake.put_assignment(&rg, BOB, CONTRIBUTOR, None);
    assert!(fake.check_access(BOB, "Microsoft.Compute/virtualMachines/write", &vm));
    assert!(!fake.check_access(BOB, "Microsoft.Authorization/roleAssignments/write", &vm));
    assert!(
        !fake.check_access(BOB, "Microsoft.Compute/virtualMachines/write", &sub_scope()),
        "not above the assignment"
    );
    assert!(
        !fake.check_access(BOB, blob_read, &container),
        "`*` in actions grants no data action"
    );
    fake.put_assignment(&rg, BOB, OWNER, None);
    assert!(fake.check_access(BOB, "Microsoft.Authorization/roleAssignments/write", &vm));
    // Data actions only through dataActions, and only at or below the assignment.
    fake.put_assignment(&container, BREVET_SP, BLOB_READER, None);
    assert!(fake.check_access(BREVET_SP, blob_read, &format!("{container}/blobs/b.txt")));
    assert!(!fake.check_access(BREVET_SP, blob_read, &rg));
    assert!(!fake.check_access(
        BREVET_SP,
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write",
        &container
    ));
    // A custom role: notActions subtract within its block only; another block adds back.
    let custom = "88888888-8888-4888-8888-888888888888";
    let (s, e) = put_role(
        &fake,
        custom,
        json!({"roleName": "vm operator", "assignableScopes": [sub_scope()], "permissions": [
            {"actions": ["Microsoft.Compute/virtualMachines/*"], "notActions": ["Microsoft.Compute/virtualMachines/delete"]},
            {"actions": ["Microsoft.Compute/virtualMachines/delete"]}]}),
    );
    assert_eq!(s, 201, "{e}");
    let carol = "ca201000-0000-4000-8000-000000000004";
    fake.put_assignment(&sub_scope(), carol, custom, None);
    assert!(fake.check_access(carol, "Microsoft.Compute/virtualMachines/start/action", &vm));
    assert!(
        fake.check_access(carol, "Microsoft.Compute/virtualMachines/delete", &vm),
        "the second block allows it"
    );
    assert!(!fake.check_access(carol, "Microsoft.Storage/storageAccounts/read", &vm));
    // The caller's permissions, as ARM's permissions API lists them.
    let (s, p) = call(
        &fake,
        "GET",
        &format!("/subscriptions/{SUB}/resourcegroups/rg1/providers/Microsoft.Authorization/permissions?{RBAC}"),
        Some(&FakeAzure::token_for(BOB)),
        None,
    );
    assert_eq!(s, 200, "{p}");
    let blocks = p["value"].as_array().unwrap();
    assert_eq!(blocks.len(), 2, "Contributor and Owner: {p}");
    assert!(blocks
        .iter()
        .any(|b| b["notActions"].as_array().is_some_and(|n| !n.is_empty())));
    let (_, p) = call(
        &fake,
        "GET",
        &format!("{rg}/providers/Microsoft.Authorization/permissions?{RBAC}"),
        None,
        None,
    );
    assert_eq!(p["value"], json!([]), "no token: nothing held");
}

fn pim_request(fake: &FakeAzure, scope: &str, name: &str, props: Value) -> (u16, Value) {
    call(
        fake,
        "PUT",
        &format!(
            "{scope}/providers/Microsoft.Authorization/roleAssignmentScheduleRequests/{name}?{PIM}"
        ),
        Some(&FakeAzure::token_for(BREVET_SP)),
        Some(&json!({"properties": props})),
    )
}

fn admin(request_type: &str, principal: &str, role: &str, expiration: Value) -> Value {
    json!({"principalId": principal, "roleDefinitionId": role_id(role), "requestType": request_type,
        "justification": "ticket 7", "ticketInfo": {"ticketNumber": "7", "ticketSystem": "brevet"},
        "scheduleInfo": {"expiration": expiration}})
}

#[test]
fn pim_assignments_expire_by_themselves() {
    let fake = tenant();
    let rg = rg_scope();
    let (s, r) = pim_request(
        &fake,
        &rg,
        G1,
        admin(
            "AdminAssign",
            ALICE,
            CONTRIBUTOR,
            json!({"type": "AfterDuration", "duration": "PT1H"}),
        ),
    );
    assert_eq!(s, 201, "{r}");
    assert_eq!(r["properties"]["status"], "Provisioned");
    assert_eq!(r["properties"]["requestorId"], BREVET_SP);
    assert_eq!(
        r["properties"]["expandedProperties"]["roleDefinition"]["displayName"],
        "Contributor"
    );
    let schedule_id = r["properties"]["targetRoleAssignmentScheduleId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(schedule_id.starts_with(&format!(
        "{rg}/providers/Microsoft.Authorization/roleAssignmentSchedules/"
    )));
    // An active role assignment, made by PIM.
    let assignments = fake.assignments();
    assert_eq!(assignments.len(), 1);
    assert_eq!(assignments[0]["properties"]["createdBy"], MS_PIM_OBJECT_ID);
    assert!(fake.check_access(ALICE, "Microsoft.Compute/virtualMachines/write", &rg));
    // Its schedule and instance are listed.
    let (_, schedules) = call(
        &fake,
        "GET",
        &format!("{rg}/providers/Microsoft.Authorization/roleAssignmentSchedules?{PIM}&$filter=principalId%20eq%20%27{ALICE}%27"),
        None,
        None,
    );
    assert_eq!(schedules["value"][0]["id"], json!(schedule_id));
    let end = schedules["value"][0]["properties"]["endDateTime"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, instances) = call(
        &fake,
        "GET",
        &format!("{}/providers/Microsoft.Authorization/roleAssignmentScheduleInstances?{PIM}&$filter=atScope()", sub_scope()),
        None,
        None,
    );
    assert_eq!(
        instances["value"],
        json!([]),
        "atScope() from the subscription does not see the RG's"
    );
    let (_, instances) = call(
        &fake,
        "GET",
        &format!(
            "{}/providers/Microsoft.Authorization/roleAssignmentScheduleInstances?{PIM}",
            sub_scope()
        ),
        None,
        None,
    );
    assert_eq!(
        instances["value"][0]["properties"]["originRoleAssignmentId"],
        assignments[0]["id"]
    );
    // The same again: the role assignment exists.
    let (s, e) = pim_request(
        &fake,
        &rg,
        G2,
        admin(
            "AdminAssign",
            ALICE,
            CONTRIBUTOR,
            json!({"type": "AfterDuration", "duration": "PT1H"}),
        ),
    );
    assert_eq!((s, code(&e)), (400, "RoleAssignmentExists"));
    // AdminExtend moves the end.
    let (s, r) = pim_request(
        &fake,
        &rg,
        G2,
        admin(
            "AdminExtend",
            ALICE,
            CONTRIBUTOR,
            json!({"type": "AfterDuration", "duration": "PT2H"}),
        ),
    );
    assert_eq!(
        (s, r["properties"]["status"].as_str()),
        (201, Some("Provisioned")),
        "{r}"
    );
    fake.advance(chrono::Duration::minutes(90));
    assert_eq!(fake.assignments().len(), 1, "extended past {end}");
    fake.advance(chrono::Duration::minutes(31));
    assert!(
        fake.assignments().is_empty(),
        "PIM removed it at endDateTime"
    );
    assert!(!fake.check_access(ALICE, "Microsoft.Compute/virtualMachines/write", &rg));
    // The request stays readable.
    let (s, r) = call(
        &fake,
        "GET",
        &format!(
            "{rg}/providers/Microsoft.Authorization/roleAssignmentScheduleRequests/{G1}?{PIM}"
        ),
        None,
        None,
    );
    assert_eq!((s, r["name"].as_str()), (200, Some(G1)));
    // AdminRemove of something active: Revoked; of nothing: RoleAssignmentDoesNotExist.
    let end_at = crate_time(fake.now() + chrono::Duration::hours(1));
    assert_eq!(
        pim_request(
            &fake,
            &rg,
            G3,
            admin(
                "AdminAssign",
                BOB,
                READER,
                json!({"type": "AfterDateTime", "endDateTime": end_at})
            )
        )
        .0,
        201
    );
    let (s, r) = pim_request(
        &fake,
        &rg,
        "99999999-9999-4999-8999-999999999999",
        admin("AdminRemove", BOB, READER, Value::Null),
    );
    assert_eq!(
        (s, r["properties"]["status"].as_str()),
        (201, Some("Revoked"))
    );
    assert!(fake.assignments().is_empty());
    let (s, e) = pim_request(
        &fake,
        &rg,
        "aaaaaaaa-9999-4999-8999-999999999999",
        admin("AdminRemove", BOB, READER, Value::Null),
    );
    assert_eq!((s, code(&e)), (400, "RoleAssignmentDoesNotExist"));
    // Reusing a request name is refused.
    let (s, e) = pim_request(
        &fake,
        &rg,
        G1,
        admin(
            "AdminAssign",
            BOB,
            READER,
            json!({"type": "AfterDuration", "duration": "PT1H"}),
        ),
    );
    assert_eq!((s, code(&e)), (400, "RoleAssignmentRequestExists"));
}

fn crate_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[test]
fn pim_policy_pending_provisioning_and_cancel() {
    let fake = tenant();
    let rg = rg_scope();
    fake.set_pim_max_duration(&sub_scope(), chrono::Duration::hours(8));
    for (name, expiration) in [
        (
            "11111111-0000-4000-8000-000000000001",
            json!({"type": "AfterDuration", "duration": "PT9H"}),
        ),
        (
            "11111111-0000-4000-8000-000000000002",
            json!({"type": "NoExpiration"}),
        ),
    ] {
        let (s, e) = pim_request(
            &fake,
            &rg,
            name,
            admin("AdminAssign", ALICE, READER, expiration),
        );
        assert_eq!(
            (s, code(&e)),
            (400, "RoleAssignmentRequestPolicyValidationFailed"),
            "{e}"
        );
        assert_eq!(
            e["error"]["message"],
            "The following policy rules failed: [\"ExpirationRule\"]"
        );
    }
    let (s, e) = pim_request(
        &fake,
        &rg,
        "11111111-0000-4000-8000-000000000003",
        admin(
            "AdminAssign",
            ALICE,
            READER,
            json!({"type": "AfterDuration", "duration": "eight hours"}),
        ),
    );
    assert_eq!((s, code(&e)), (400, "InvalidRoleAssignmentScheduleRequest"));
    // Pending first, provisioned at the next GET.
    fake.set_pim_pending(true);
    let (s, r) = pim_request(
        &fake,
        &rg,
        G1,
        admin(
            "AdminAssign",
            ALICE,
            READER,
            json!({"type": "AfterDuration", "duration": "PT8H"}),
        ),
    );
    assert_eq!(
        (s, r["properties"]["status"].as_str()),
        (201, Some("PendingProvisioning"))
    );
    assert!(fake.assignments().is_empty());
    let (_, r) = call(
        &fake,
        "GET",
        &format!(
            "{rg}/providers/Microsoft.Authorization/roleAssignmentScheduleRequests/{G1}?{PIM}"
        ),
        None,
        None,
    );
    assert_eq!(r["properties"]["status"], "Provisioned");
    assert_eq!(fake.assignments().len(), 1);
    // A pending request can be canceled; a provisioned one no more.
    let (_, r) = pim_request(
        &fake,
        &rg,
        G2,
        admin(
            "AdminAssign",
            BOB,
            READER,
            json!({"type": "AfterDuration", "duration": "PT1H"}),
        ),
    );
    assert_eq!(r["properties"]["status"], "PendingProvisioning");
    let cancel = |name: &str| {
        call(&fake, "POST", &format!("{rg}/providers/Microsoft.Authorization/roleAssignmentScheduleRequests/{name}/cancel?{PIM}"), None, None)
    };
    assert_eq!(cancel(G2).0, 200);
    let (_, r) = call(
        &fake,
        "GET",
        &format!(
            "{rg}/providers/Microsoft.Authorization/roleAssignmentScheduleRequests/{G2}?{PIM}"
        ),
        None,
        None,
    );
    assert_eq!(r["properties"]["status"], "Canceled");
    assert_eq!(fake.assignments().len(), 1);
    assert_eq!(cancel(G1).0, 400);
}

#[test]
fn throttling_answers_429_with_retry_after() {
    let fake = tenant();
    fake.throttle(2);
    let path = format!(
        "{}/providers/Microsoft.Authorization/roleAssignments?{RBAC}",
        sub_scope()
    );
    for _ in 0..2 {
        let r = call_raw(&fake.url, "GET", &path, None, None, "application/json");
        assert_eq!(r.status, 429);
        assert!(
            r.head.to_ascii_lowercase().contains("retry-after: 1"),
            "{}",
            r.head
        );
    }
    assert_eq!(call(&fake, "GET", &path, None, None).0, 200);
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 429, 200]);
}

#[test]
fn tokens_act_as_the_apps_service_principal_and_callers_can_be_enforced() {
    let fake = tenant();
    fake.add_app("brevet-client", "s3cret", BREVET_SP);
    let token_path = format!("/{TENANT_ID}/oauth2/v2.0/token");
    let form = |secret: &str| {
        format!("grant_type=client_credentials&client_id=brevet-client&client_secret={secret}&scope=https%3A%2F%2Fmanagement.azure.com%2F.default")
    };
    let r = call_raw(
        &fake.url,
        "POST",
        &token_path,
        None,
        Some(&form("nope")),
        "application/x-www-form-urlencoded",
    );
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    assert_eq!(r.body["error_codes"], json!([7000215]));
    let r = call_raw(
        &fake.url,
        "POST",
        &token_path,
        None,
        Some(&form("s3cret")),
        "application/x-www-form-urlencoded",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["token_type"], "Bearer");
    let token = r.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(token, FakeAzure::token_for(BREVET_SP));
    let r = call_raw(
        &fake.url,
        "POST",
        "/other-tenant/oauth2/v2.0/token",
        None,
        Some(&form("s3cret")),
        "application/x-www-form-urlencoded",
    );
    assert_eq!(r.status, 400);
    // Enforced callers: no token 401; a caller without the action 403; with it, allowed.
    fake.enforce_callers(true);
    let (s, e) = put_assignment(
        &fake,
        &rg_scope(),
        G1,
        &assignment_body(ALICE, READER, None),
    );
    assert_eq!((s, code(&e)), (401, "AuthenticationFailed"));
    let path = format!(
        "{}/providers/Microsoft.Authorization/roleAssignments/{G1}?{RBAC}",
        rg_scope()
    );
    let body = assignment_body(ALICE, READER, None);
    let (s, e) = call(&fake, "PUT", &path, Some(&token), Some(&body));
    assert_eq!((s, code(&e)), (403, "AuthorizationFailed"));
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Microsoft.Authorization/roleAssignments/write"));
    fake.put_assignment(&sub_scope(), BREVET_SP, USER_ACCESS_ADMIN, None);
    let (s, a) = call(&fake, "PUT", &path, Some(&token), Some(&body));
    assert_eq!(s, 201, "{a}");
    assert_eq!(a["properties"]["createdBy"], BREVET_SP);
    assert_eq!(
        call(
            &fake,
            "DELETE",
            &path,
            Some(&FakeAzure::token_for(ALICE)),
            None
        )
        .0,
        403
    );
    assert_eq!(call(&fake, "DELETE", &path, Some(&token), None).0, 200);
}

#[test]
fn odd_input_is_refused_never_crashes() {
    let fake = tenant();
    let bodies = [
        "", "null", "[]", "{", "\"x\"", "{\"properties\": null}", "{\"properties\": []}",
        "{\"properties\": {\"principalId\": 1, \"roleDefinitionId\": []}}",
        "{\"properties\": {\"principalId\": \"\\u0000\", \"roleDefinitionId\": \"/providers/Microsoft.Authorization/roleDefinitions/\"}}",
        "{\"properties\": {\"roleName\": \"\", \"permissions\": [{\"actions\": [\"**\"]}], \"assignableScopes\": [\"//\"]}}",
        "{\"properties\": {\"principalId\": \"x\", \"roleDefinitionId\": \"acdd72a7-3385-48ef-bd42-f606fba81ae7\", \"requestType\": \"AdminAssign\", \"scheduleInfo\": {\"startDateTime\": \"9999-12-31T23:59:59Z\", \"expiration\": {\"type\": \"AfterDuration\", \"duration\": \"P99999999999W\"}}}}",
        "grant_type=client_credentials&client_id=%ZZ",
    ];
    let sub = sub_scope();
    let paths = [
        format!("{sub}/providers/Microsoft.Authorization/roleAssignments/{G1}?{RBAC}"),
        format!("{sub}/providers/Microsoft.Authorization/roleAssignments?{RBAC}&$filter=principalId%20eq%20"),
        format!("{sub}/providers/Microsoft.Authorization/roleDefinitions/{G1}?{RBAC}"),
        format!("{sub}/providers/Microsoft.Authorization/roleDefinitions?{RBAC}&$filter=%C3%A9%20and%20"),
        format!("{sub}/providers/Microsoft.Authorization/roleAssignmentScheduleRequests/{G1}?{PIM}"),
        format!("{sub}/providers/Microsoft.Authorization/roleAssignmentScheduleRequests/{G1}/cancel?{PIM}"),
        format!("{sub}/providers/Microsoft.Authorization/roleAssignmentScheduleInstances/x/y/z?{PIM}"),
        format!("{sub}/providers/Microsoft.Authorization/permissions?{RBAC}&$skipToken=99999999999999999999999"),
        format!("/providers/Microsoft.Authorization/roleAssignments/{G1}?{RBAC}"),
        format!("/providers/Microsoft.Authorization?{RBAC}"),
        format!("/subscriptions/providers/Microsoft.Authorization/roleAssignments?{RBAC}"),
        "/%ZZ/%/providers/Microsoft.Authorization/roleAssignments".to_owned(),
        format!("/{TENANT_ID}/oauth2/v2.0/token"),
        "/".to_owned(),
    ];
    for path in &paths {
        for body in bodies {
            for method in ["POST", "PUT", "PATCH", "DELETE", "GET"] {
                for token in [Some("garbage"), Some("a.%%%.b"), None] {
                    let r = call_raw(
                        &fake.url,
                        method,
                        path,
                        token,
                        Some(body),
                        "application/json",
                    );
                    assert!(
                        (200..500).contains(&r.status),
                        "{method} {path} {body}: {}",
                        r.status
                    );
                }
            }
        }
    }
    assert_eq!(
        call(
            &fake,
            "GET",
            &format!("{sub}/providers/Microsoft.Authorization/roleAssignments?{RBAC}"),
            None,
            None
        )
        .0,
        200
    );
}

#[test]
fn the_binary_serves_the_same_with_shell_controls() {
    let port = brevet_testkit::free_port().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-azure"))
        .args([
            "--port",
            &port,
            "--management-group",
            "mg1",
            "--subscription",
            &format!("{SUB}@mg1"),
            "--resource-group",
            &format!("{SUB}/rg1"),
            "--principal",
            &format!("{ALICE}@User"),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start fake-azure");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let url = line.trim().to_owned();
    assert_eq!(url, format!("http://127.0.0.1:{port}"));
    let post = |path: &str, body: Value| {
        call_raw(
            &url,
            "POST",
            path,
            None,
            Some(&body.to_string()),
            "application/json",
        )
    };
    let before: chrono::DateTime<chrono::Utc> =
        call_raw(&url, "GET", "/_fake/clock", None, None, "").body["now"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
    let after: chrono::DateTime<chrono::Utc> = post("/_fake/advance", json!({"seconds": 3600}))
        .body["now"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(after - before, chrono::Duration::hours(1));
    assert_eq!(
        post(
            "/_fake/resource-groups",
            json!({"subscription": SUB, "name": "rg2"})
        )
        .status,
        200
    );
    let seeded = post(
        "/_fake/assignments",
        json!({"scope": format!("/subscriptions/{SUB}/resourceGroups/rg2"), "principalId": ALICE, "roleDefinitionId": READER}),
    );
    assert_eq!(seeded.status, 200, "{}", seeded.body);
    let allowed = post(
        "/_fake/check-access",
        json!({"principalId": ALICE, "action": "Microsoft.Compute/virtualMachines/read", "scope": format!("/subscriptions/{SUB}/resourceGroups/rg2/providers/Microsoft.Compute/virtualMachines/vm1")}),
    );
    assert_eq!(allowed.body["allowed"], true);
    let r = call_raw(
        &url,
        "GET",
        &format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleAssignments?{RBAC}"),
        None,
        None,
        "",
    );
    assert_eq!(r.body["value"][0]["id"], seeded.body["id"]);
    assert_eq!(post("/_fake/nope", json!({})).status, 400);
    let _ = child.kill();
    let _ = child.wait();
}

/// The venv's python (next to moto_server), or None when the tests run outside scripts/test.
fn venv_python() -> Option<std::path::PathBuf> {
    match std::env::var("BREVET_TEST_MOTO_SERVER") {
        Ok(moto) => Some(std::path::Path::new(&moto).with_file_name("python")),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("BREVET_TEST_MOTO_SERVER is not set: run the tests with scripts/test, which installs azure-mgmt-authorization")
        }
        Err(_) => {
            eprintln!("SKIPPED: BREVET_TEST_MOTO_SERVER is not set (run scripts/test): Microsoft's Python client was not run");
            None
        }
    }
}

#[test]
fn microsofts_python_client_round_trips() {
    let Some(python) = venv_python() else { return };
    let fake = tenant();
    fake.add_app("py-client", "py-secret", BREVET_SP);
    fake.put_assignment(&sub_scope(), BREVET_SP, USER_ACCESS_ADMIN, None);
    fake.set_page_size(1);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/support/azure_clients.py");
    let out = Command::new(&python)
        .args([
            script,
            &fake.url,
            SUB,
            ALICE,
            &FakeAzure::token_for(BREVET_SP),
        ])
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "azure_clients.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("a JSON summary line");
    assert_eq!(summary["created_status"], "ok");
    assert_eq!(summary["listed"], true, "{summary}");
    assert_eq!(summary["listed_pages_followed"], true, "{summary}");
    assert_eq!(summary["duplicate_error"], "RoleAssignmentExists");
    assert_eq!(summary["deleted"], true);
    assert_eq!(summary["deleted_again"], Value::Null);
    assert_eq!(summary["custom_role_type"], "CustomRole");
    assert_eq!(summary["custom_role_deleted"], true);
    assert_eq!(summary["pim_status"], "Provisioned");
    assert_eq!(summary["pim_read_back"], true);
    assert_eq!(summary["pim_instances"], 1);
    assert_eq!(summary["permissions_include_write"], true);
    assert_eq!(summary["http_enforced_without_opt_out"], true);
    // Every call the client made carried the api-version the stand-in serves.
    assert!(
        fake.requests()
            .iter()
            .all(|r| r.query.contains("api-version=20")),
        "{:?}",
        fake.requests()
    );
}
