"""Users as Flask apps store them, one JSON object per line: the password
hashes Werkzeug (scrypt, its default, and pbkdf2:sha256), the bcrypt package
and passlib (pbkdf2-sha256) make. Each user's password is "<name> password"."""
import json

import bcrypt
from passlib.hash import pbkdf2_sha256
from werkzeug.security import generate_password_hash

users = {
    "wz-scrypt": generate_password_hash("wz-scrypt password"),
    "wz-pbkdf2": generate_password_hash("wz-pbkdf2 password", method="pbkdf2:sha256"),
    "bcrypt": bcrypt.hashpw(b"bcrypt password", bcrypt.gensalt(rounds=10)).decode(),
    # More rounds than passlib's default 29,000: tests/flask.rs compares a wrong
    # password's time with the right one's, which adds the argon2id rehash; a
    # verification several times cheaper than that rehash would drown in it.
    "passlib": pbkdf2_sha256.using(rounds=200_000).hash("passlib password"),
}
for name, hashed in users.items():
    print(json.dumps({"username": name, "password_hash": hashed, "roles": ["user"]}))
