#!/usr/bin/env python3
"""Verify MeterGate records with code nobody at MeterGate wrote: jwcrypto (JWS) and pyocmf (OCMF).

    peer_verify.py jws  KEYS.jwks.json RECORDS.txt   # JWS compact, keys from a JWK Set (the retained keys topic)
    peer_verify.py ocmf SPKI_HEX_FILE  RECORDS.txt   # OCMF, key as SPKI DER hex (pyocmf strict mode)

One output line per record: "line N ok seq=S sha256=H" or "line N FAIL <why>". The chain is checked
independently too: for consecutive seqs of one stream, prev must be the SHA-256 of the previous payload
bytes, and seq 1 must have a zero prev. Exit status 0 when every record passes, 1 otherwise.
Install: pip install 'pyocmf[crypto]==0.6.0' 'jwcrypto>=1.5,<2'.
"""
import hashlib
import json
import sys
import warnings


def canonical(obj) -> bytes:
    # RFC 8785 (JCS) for MeterGate records, which hold only strings, integers and objects.
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def verify_jws(keys_path, line):
    from jwcrypto import jwk, jws

    keyset = jwk.JWKSet.from_json(open(keys_path).read())
    token = jws.JWS()
    token.deserialize(line)
    kid = token.jose_header.get("kid")
    key = keyset.get_key(kid)
    if key is None:
        raise ValueError(f"unknown kid {kid}")
    token.verify(key, alg=token.jose_header.get("alg"))  # raises InvalidJWSSignature
    payload = token.payload
    record = json.loads(payload)
    if canonical(record) != payload:
        raise ValueError("payload is not in canonical (JCS) form")
    if record.get("kid") != kid:
        raise ValueError("header kid differs from the record's kid")
    return record, payload


def verify_ocmf(spki_path, line):
    from pyocmf import OCMF, SpecWarning

    spki = open(spki_path).read().strip()
    with warnings.catch_warnings():
        warnings.simplefilter("error", SpecWarning)
        ocmf = OCMF.from_string(line, strict=True)
        if not ocmf.verify_signature(spki):
            raise ValueError("pyocmf: signature does not verify")
    errors = ocmf.check_eichrecht(errors_only=True)
    if errors:
        raise ValueError(f"pyocmf eichrecht errors: {errors}")
    payload = line.split("|")[1].encode("utf-8")
    fields = json.loads(payload)
    record = fields["ZM"]
    if fields.get("ZP") != record["prev"] or fields.get("PG") != f"F{record['seq']}":
        raise ValueError("OCMF ZP/PG disagree with the MeterGate record in ZM")
    return record, payload


def main():
    kind, key_path, records_path = sys.argv[1:4]
    check = verify_jws if kind == "jws" else verify_ocmf
    last = {}  # stream -> (seq, sha256)
    failures = 0
    for n, line in enumerate(open(records_path), start=1):
        line = line.strip()
        if not line:
            continue
        try:
            record, payload = check(key_path, line)
            digest = hashlib.sha256(payload).hexdigest()
            stream = (record["gateway"], record["meter"], record["epoch"])
            seq = record["seq"]
            if seq == 1 and record["prev"] != "0" * 64:
                raise ValueError("seq 1 must have a zero prev")
            before = last.get(stream)
            if before and before[0] + 1 == seq and record["prev"] != before[1]:
                raise ValueError(f"prev {record['prev']} is not the SHA-256 of seq {before[0]}'s payload")
            last[stream] = (seq, digest)
            print(f"line {n} ok seq={seq} sha256={digest}")
        except Exception as error:  # noqa: BLE001 - every failure is reported, whatever raised it
            failures += 1
            print(f"line {n} FAIL {type(error).__name__}: {error}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
