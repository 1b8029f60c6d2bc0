-- A database and role for the MFA service on the platform PostgreSQL.
-- psql -v password="'...'" -f infra/postgres/create-database.sql
CREATE ROLE mfa LOGIN PASSWORD :password;
CREATE DATABASE mfa OWNER mfa;
-- The service creates its tables on start (events, tracking, views, sessions):
--   MFA_DATABASE_URL=postgresql://mfa:PASSWORD@HOST:5432/mfa
