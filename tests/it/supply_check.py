#!/usr/bin/env python3
"""Checks of boxwright's supply-chain output by implementations that are not
boxwright's (run by tests/it/supply*.rs):

  sbom-spdx FILE        the official SPDX 2.3 JSON schema (as shipped by
                        lib4sbom), then spdx-tools' parser and validator
  sbom-cyclonedx FILE   cyclonedx-python-lib's JsonStrictValidator (the
                        official CycloneDX 1.6 schema it bundles)
  signature PUB PAYLOAD SIG_B64
                        an ECDSA P-256 SHA-256 signature (DER, base64) over
                        the payload file, with Python's `cryptography`
  dsse PUB ENVELOPE     a DSSE envelope: its signature over the PAE of its
                        payload; prints the payload

Exit 0 when valid, 1 when not (the reason on stderr), 3 when a Python package
is missing (install them with scripts/test).
"""

import base64
import json
import os
import sys


def need(module):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as e:
        sys.stderr.write(f"missing Python package for {module} ({e}): run scripts/test\n")
        sys.exit(3)


def fail(msg):
    sys.stderr.write(msg + "\n")
    sys.exit(1)


def sbom_spdx(path):
    jsonschema = need("jsonschema")
    lib4sbom = need("lib4sbom")
    schema_file = os.path.join(os.path.dirname(lib4sbom.__file__), "schemas", "spdx", "2.3-schema.json")
    with open(schema_file) as f:
        schema = json.load(f)
    with open(path) as f:
        doc = json.load(f)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=str)
    if errors:
        fail("SPDX 2.3 schema: " + "; ".join(e.message for e in errors[:5]))
    parse = need("spdx_tools.spdx.parser.parse_anything")
    validate = need("spdx_tools.spdx.validation.document_validator")
    document = parse.parse_file(path)
    messages = validate.validate_full_spdx_document(document, "SPDX-2.3")
    if messages:
        fail("spdx-tools: " + "; ".join(m.validation_message for m in messages[:5]))
    print(f"spdx ok: {len(document.packages)} packages, {len(document.files)} files")


def sbom_cyclonedx(path):
    validator = need("cyclonedx.validation.json")
    schema = need("cyclonedx.schema")
    with open(path) as f:
        text = f.read()
    v = validator.JsonStrictValidator(schema.SchemaVersion.V1_6)
    err = v.validate_str(text)
    if err is not None:
        fail(f"CycloneDX 1.6 schema: {err}")
    print(f"cyclonedx ok: {len(json.loads(text).get('components', []))} components")


def load_public(path):
    serialization = need("cryptography.hazmat.primitives.serialization")
    with open(path, "rb") as f:
        return serialization.load_pem_public_key(f.read())


def ecdsa_verify(pub, data, sig):
    ec = need("cryptography.hazmat.primitives.asymmetric.ec")
    hashes = need("cryptography.hazmat.primitives.hashes")
    exceptions = need("cryptography.exceptions")
    try:
        pub.verify(sig, data, ec.ECDSA(hashes.SHA256()))
    except exceptions.InvalidSignature:
        fail("invalid signature")


def signature(pub_path, payload_path, sig_b64):
    with open(payload_path, "rb") as f:
        payload = f.read()
    ecdsa_verify(load_public(pub_path), payload, base64.b64decode(sig_b64))
    print("signature ok")


def pae(payload_type, payload):
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def dsse(pub_path, envelope_path):
    with open(envelope_path) as f:
        env = json.load(f)
    payload = base64.b64decode(env["payload"])
    if not env.get("signatures"):
        fail("no signatures")
    for s in env["signatures"]:
        ecdsa_verify(load_public(pub_path), pae(env["payloadType"], payload), base64.b64decode(s["sig"]))
    sys.stdout.write(payload.decode())


def main(argv):
    commands = {
        "sbom-spdx": (sbom_spdx, 1),
        "sbom-cyclonedx": (sbom_cyclonedx, 1),
        "signature": (signature, 3),
        "dsse": (dsse, 2),
    }
    if len(argv) < 2 or argv[1] not in commands or len(argv) - 2 != commands[argv[1]][1]:
        fail(__doc__)
    fn, _ = commands[argv[1]]
    fn(*argv[2:])


if __name__ == "__main__":
    main(sys.argv)
