"""Verifies a latch access token the way an app would, with PyJWT.

Usage: verify_jwt.py BASE_URL CA_FILE ISSUER AUDIENCE [HS256_SECRET_FILE]
Reads the token on stdin. For EdDSA it fetches BASE_URL/.well-known/jwks.json
over TLS (trusting CA_FILE), picks the key by `kid`, and verifies signature,
iss, aud, exp and iat. Prints the claims as JSON; exits 1 on failure.
"""
import json
import ssl
import sys
import urllib.request

import jwt

base, ca, issuer, audience = sys.argv[1:5]
token = sys.stdin.read().strip()
options = {"require": ["exp", "iat", "iss", "aud", "sub"]}
try:
    if len(sys.argv) > 5:
        secret = open(sys.argv[5], "rb").read().rstrip(b"\r\n")
        claims = jwt.decode(token, secret, algorithms=["HS256"], audience=audience, issuer=issuer, options=options)
    else:
        ctx = ssl.create_default_context(cafile=ca)
        jwks = json.load(urllib.request.urlopen(base + "/.well-known/jwks.json", context=ctx))
        kid = jwt.get_unverified_header(token)["kid"]
        key = next(k for k in jwks["keys"] if k["kid"] == kid)
        claims = jwt.decode(token, jwt.PyJWK(key).key, algorithms=["EdDSA"], audience=audience, issuer=issuer, options=options)
except Exception as e:  # the test reads this line
    print(f"verification failed: {type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(1)
print(json.dumps(claims))
