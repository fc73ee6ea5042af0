"""moto_server with IAM access control on, for Brevet's AWS tests.

moto enforces IAM after INITIAL_NO_AUTH_ACTION_COUNT requests: it finds the identity from the
access key id, then evaluates that identity's policies (actions, resources, role trust policies).
It also re-checks SigV4 signatures, but over the form body *re-encoded by Python's urlencode*,
not the bytes that were signed; the AWS SDK for Rust leaves ':' and '/' unencoded (as RFC 3986
allows), so every request whose parameters contain them is refused as SignatureDoesNotMatch
although it is correctly signed. This wrapper turns off only that signature re-check. Unknown
access keys are still refused and every action is still authorized against IAM policies.
"""
import sys

from moto.iam import access_control
from moto.server import main

access_control.IAMRequestBase.check_signature = lambda self: None

if __name__ == "__main__":
    main(sys.argv[1:])
