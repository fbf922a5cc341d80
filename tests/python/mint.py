"""Tokens as the Flask apps authgate replaces mint them: Flask-JWT-Extended
(access, refresh, expired, cookie mode with its CSRF claim) and hand-written
PyJWT decorators ({"user", "exp"}; {"username", "role", "exp"}). The shared
secret comes from $APP_SECRET; prints one JSON object."""
import datetime
import json
import os
import time

import jwt
from flask import Flask
from flask_jwt_extended import JWTManager, create_access_token, create_refresh_token, decode_token

secret = os.environ["APP_SECRET"]
app = Flask(__name__)
app.config["JWT_SECRET_KEY"] = secret
app.config["JWT_TOKEN_LOCATION"] = ["headers", "cookies"]
JWTManager(app)
now = int(time.time())
with app.app_context():
    access = create_access_token(identity="alice", additional_claims={"roles": ["admin"]})
    out = {
        "fje_access": access,
        "fje_access_csrf": decode_token(access)["csrf"],
        "fje_refresh": create_refresh_token(identity="alice"),
        "fje_expired": create_access_token(identity="alice", expires_delta=datetime.timedelta(seconds=-120)),
    }
out["pyjwt_user"] = jwt.encode({"user": "bob", "exp": now + 300}, secret, algorithm="HS256")
out["pyjwt_username_role"] = jwt.encode({"username": "carol", "role": "admin", "exp": now + 300}, secret, algorithm="HS256")
# Signed with the app's secret, posing as one of authgate's own tokens.
out["posing_as_ours"] = jwt.encode(
    {"iss": "authgate", "aud": "api", "sub": "mallory", "roles": ["admin"], "jti": "x", "exp": now + 300, "nbf": now, "iat": now},
    secret, algorithm="HS256", headers={"typ": "at+jwt", "kid": "es256"})
print(json.dumps(out))
