"""A Flask-JWT-Extended app as teams run it today, at step 1 of the move to
authgate (docs/migrating-from-flask.md): it still issues its tokens at
/login, and its handlers read the caller from authgate's headers instead of
`@jwt_required()`."""
import os

from flask import Flask, jsonify, request
from flask_jwt_extended import JWTManager, create_access_token

app = Flask(__name__)
with open(os.environ.get("SECRET_FILE", "flask.secret")) as f:
    app.config["JWT_SECRET_KEY"] = f.read().strip()
JWTManager(app)

# The app's users, as before (its own table in real life).
USERS = {"alice": ("correct horse battery", ["admin"]), "bob": ("battery staple", ["user"])}


@app.post("/login")
def login():
    body = request.get_json(force=True)
    user = USERS.get(body.get("username"))
    if user is None or user[0] != body.get("password"):
        return jsonify(msg="bad credentials"), 401
    return jsonify(access_token=create_access_token(identity=body["username"], additional_claims={"roles": user[1]}))


# Before: @jwt_required() and get_jwt_identity() / get_jwt()["roles"].
@app.get("/orders")
def orders():
    return jsonify(user=request.headers["X-Auth-User"], roles=request.headers.get("X-Auth-Roles", "").split(","))


@app.delete("/orders/<int:order>")
def delete_order(order):
    # The admin rule now lives on the route in gateway.toml; the app trusts it.
    return jsonify(deleted=order, by=request.headers["X-Auth-User"])
