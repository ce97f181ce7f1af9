-- The PostgreSQL schema: the same tables and columns as the SQLite one, so that one
-- row mapping (src/store/rows.rs) serves both. Written to the subset of SQL that
-- PostgreSQL, CockroachDB and YugabyteDB all run: TEXT, BIGINT, BOOLEAN, plain and
-- partial indexes, foreign keys with ON DELETE CASCADE. JSON documents are TEXT.

-- The tenant: signing keys, connections and clients live in the database so that
-- every instance sharing it issues and verifies the same tokens.
CREATE TABLE signing_keys (
    kid             TEXT PRIMARY KEY NOT NULL,
    private_key_pem TEXT NOT NULL,
    public_n        TEXT NOT NULL, -- base64url, as published in the JWKS
    public_e        TEXT NOT NULL,
    created_at      BIGINT NOT NULL, -- unix seconds
    retired_at      BIGINT           -- NULL while it is the signing key
);

CREATE TABLE connections (
    id         TEXT PRIMARY KEY NOT NULL, -- con_ + 16 alphanumerics
    name       TEXT NOT NULL UNIQUE,
    strategy   TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE clients (
    client_id   TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    secret_hash TEXT,           -- argon2id PHC string; NULL for public clients
    grant_types TEXT NOT NULL,  -- space-separated
    scopes      TEXT NOT NULL,  -- space-separated Management API scopes
    created_at  BIGINT NOT NULL
);

-- A user is its root profile; its identities (main first) are rows of `identities`.
-- Link and unlink lock the users rows involved (SELECT … FOR UPDATE, in user_id order)
-- before they touch any identity.
CREATE TABLE users (
    user_id        TEXT PRIMARY KEY NOT NULL,
    email          TEXT,
    email_lower    TEXT,
    email_verified BOOLEAN NOT NULL DEFAULT FALSE,
    username       TEXT,
    phone_number   TEXT,
    phone_verified BOOLEAN NOT NULL DEFAULT FALSE,
    name           TEXT,
    given_name     TEXT,
    family_name    TEXT,
    nickname       TEXT,
    picture        TEXT,
    profile_extra  TEXT NOT NULL DEFAULT '{}', -- root attributes beyond the columns (kept on link/unlink)
    user_metadata  TEXT NOT NULL DEFAULT '{}',
    app_metadata   TEXT NOT NULL DEFAULT '{}',
    blocked        BOOLEAN NOT NULL DEFAULT FALSE,
    last_login     TEXT,
    logins_count   BIGINT NOT NULL DEFAULT 0,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);
CREATE INDEX users_email_lower ON users (email_lower);
CREATE INDEX users_created ON users (created_at, user_id);

-- One row per identity. The primary key is the ownership guard: an identity exists
-- once, so it can never belong to two users.
CREATE TABLE identities (
    provider         TEXT NOT NULL,
    identity_user_id TEXT NOT NULL,                  -- string form of the provider-side id
    user_id_is_int   BOOLEAN NOT NULL DEFAULT FALSE, -- the id was a JSON integer
    owner_user_id    TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    position         BIGINT NOT NULL,                -- 0 = main identity
    connection_id    TEXT NOT NULL REFERENCES connections (id),
    connection_name  TEXT NOT NULL,
    is_social        BOOLEAN NOT NULL,
    profile_data     TEXT,                           -- JSON; NULL on a main identity
    password_hash    TEXT,                           -- database identities
    login_email      TEXT,                           -- lowercased, database identities
    login_username   TEXT,                           -- lowercased, database identities
    PRIMARY KEY (provider, identity_user_id)
);
CREATE INDEX identities_owner ON identities (owner_user_id, position);
CREATE UNIQUE INDEX identities_login_email ON identities (connection_id, login_email)
    WHERE login_email IS NOT NULL;
CREATE UNIQUE INDEX identities_login_username ON identities (connection_id, login_username)
    WHERE login_username IS NOT NULL;

-- Tenant-wide settings, e.g. which client is the bootstrap admin.
CREATE TABLE settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
