-- A database and role for the MFA service on the platform PostgreSQL.
-- psql -v password="'...'" -f infra/postgres/create-database.sql
CREATE ROLE mfa LOGIN PASSWORD :password;
CREATE DATABASE mfa OWNER mfa;
\connect mfa
-- The users grid's search uses pg_trgm (trigram GIN indexes; shipped with PostgreSQL). An
-- extension lives in one schema per database: install it in `public`, shared by every schema of
-- the database; the service qualifies its operator class with that schema, whatever schema the
-- service itself uses (MFA_DATABASE_URL's ?schema=). Without this, the service creates it on its
-- first start in its own schema (pg_trgm is trusted: the database owner may), where dropping that
-- schema would drop the extension and the trigram indexes of every other schema with it.
CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public;
-- The service creates its tables on start (events, tracking, views, sessions):
--   MFA_DATABASE_URL=postgresql://mfa:PASSWORD@HOST:5432/mfa
