#!/usr/bin/env python3
"""PMapper's principal graph for one `aws iam get-account-authorization-details` file, offline.

PMapper (principalmapper 1.1.5) only builds graphs from a live account. This feeds its own
gathering code the file through an object with the IAM client calls it makes, then runs its
admin detection and every edge checker with no session (the service checkers then see no
existing functions, stacks or projects). Nothing here decides an edge: PMapper does.

Usage: python pmapper_graph.py AUTHZ.json  ->  {"nodes": [{"arn", "is_admin"}], "edges": [...]}
"""
import collections
import collections.abc
import json
import socket
import sys


def _no_network(*_a, **_k):
    raise RuntimeError("PMapper tried to reach the network during an offline build")


socket.socket.connect = _no_network
socket.create_connection = _no_network
socket.getaddrinfo = _no_network

# principalmapper 1.1.5 imports collections.Mapping, gone since Python 3.10.
for _name in ("Mapping", "MutableMapping"):
    if not hasattr(collections, _name):
        setattr(collections, _name, getattr(collections.abc, _name))

from principalmapper.graphing import edge_identification, gathering  # noqa: E402


class _Pages:
    def __init__(self, pages):
        self._pages = pages

    def paginate(self, **_kwargs):
        yield from self._pages


class FileIamClient:
    """The IAM calls `gathering.get_nodes_groups_and_policies` makes, answered from the file.
    The export has no access-key, login-profile or MFA data: no keys, a password only where the
    user record shows one was used, no MFA devices."""

    def __init__(self, authz):
        self._page = {k: authz.get(k, []) for k in ("UserDetailList", "GroupDetailList", "RoleDetailList", "Policies")}
        self._users = {u["UserName"]: u for u in self._page["UserDetailList"]}

    def get_paginator(self, name):
        if name == "get_account_authorization_details":
            return _Pages([self._page])
        if name == "list_virtual_mfa_devices":
            return _Pages([{"VirtualMFADevices": []}])
        raise NotImplementedError(name)

    def list_access_keys(self, UserName):
        return {"AccessKeyMetadata": []}

    def get_login_profile(self, UserName):
        if "PasswordLastUsed" in self._users.get(UserName, {}):
            return {"LoginProfile": {"UserName": UserName}}
        raise Exception("An error occurred (NoSuchEntity) when calling the GetLoginProfile operation")

    def list_mfa_devices(self, UserName):
        return {"MFADevices": []}


def main():
    with open(sys.argv[1]) as f:
        authz = json.load(f)
    found = gathering.get_nodes_groups_and_policies(FileIamClient(authz))
    nodes = found["nodes"]
    gathering.update_admin_status(nodes, None)
    checkers = list(edge_identification.checker_map.keys())
    edges = edge_identification.obtain_edges(None, checkers, nodes, None, None, None, None)
    out = {
        "nodes": sorted(({"arn": n.arn, "is_admin": bool(n.is_admin)} for n in nodes), key=lambda x: x["arn"]),
        "edges": sorted(
            ({"source": e.source.arn, "destination": e.destination.arn, "reason": e.reason, "short_reason": e.short_reason} for e in edges),
            key=lambda x: (x["source"], x["destination"], x["short_reason"], x["reason"]),
        ),
    }
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
