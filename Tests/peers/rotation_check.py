#!/usr/bin/env python3
"""Checks a MeterGate key-rotation statement with PyJWT (not the JOSE library the other peers use).

Usage: rotation_check.py KEYS_DOCUMENT TRUSTED_JWK GATEWAY
KEYS_DOCUMENT is what the gateway publishes on its keys topic: a JWK Set with a "rotations" array of compact JWS.
TRUSTED_JWK is the public JWK settlement already trusts for GATEWAY. Each statement signed by a trusted key is
verified with PyJWT, its payload checked (type, gateway, previous_kid = the signer's RFC 7638 thumbprint), and its
new key trusted in turn, so chains are followed. Prints one JSON object: {"trusted": [kids], "errors": [...]}.
Exit 0 when every statement verified, 1 otherwise.
"""
import base64
import hashlib
import json
import sys

import jwt
from jwt.algorithms import ECAlgorithm, OKPAlgorithm


def thumbprint(jwk):
    required = {"OKP": ["crv", "kty", "x"], "EC": ["crv", "kty", "x", "y"]}[jwk["kty"]]
    canonical = json.dumps({k: jwk[k] for k in required}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def public_key(jwk):
    text = json.dumps(jwk)
    return OKPAlgorithm.from_jwk(text) if jwk["kty"] == "OKP" else ECAlgorithm.from_jwk(text)


def main():
    document = json.load(open(sys.argv[1]))
    trusted_jwk = json.load(open(sys.argv[2]))
    gateway = sys.argv[3]
    trusted = {thumbprint(trusted_jwk): trusted_jwk}
    errors = []
    pending = list(document.get("rotations", []))
    progress = True
    while pending and progress:
        progress = False
        for token in list(pending):
            header = jwt.get_unverified_header(token)
            signer = trusted.get(header.get("kid"))
            if signer is None:
                continue
            pending.remove(token)
            progress = True
            try:
                claims = jwt.api_jws.decode_complete(token, key=public_key(signer), algorithms=["EdDSA", "ES256"])
            except jwt.PyJWTError as error:
                errors.append(f"{header.get('kid')}: {error}")
                continue
            payload = json.loads(claims["payload"])
            if header.get("typ") != "metergate-key-rotation" or payload.get("type") != "metergate-key-rotation":
                errors.append("not a metergate-key-rotation statement")
            elif payload.get("gateway") != gateway:
                errors.append(f"statement for gateway {payload.get('gateway')}, not {gateway}")
            elif payload.get("previous_kid") != thumbprint(signer):
                errors.append("previous_kid is not the signer's thumbprint")
            else:
                new_key = payload["new_key"]
                if new_key.get("kid") not in (None, thumbprint(new_key)):
                    errors.append("new_key kid is not its thumbprint")
                else:
                    trusted[thumbprint(new_key)] = new_key
    for token in pending:
        errors.append(f"statement signed by an untrusted key {jwt.get_unverified_header(token).get('kid')}")
    print(json.dumps({"trusted": sorted(trusted), "errors": errors}))
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
