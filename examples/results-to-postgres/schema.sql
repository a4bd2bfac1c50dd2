-- schema.sql - results from HL7 ORU^R01 messages: one row per patient, one
-- per order (OBR) and one per observation (OBX).  Every statement in
-- results-to-postgres.yaml is an upsert on these primary keys, so a message
-- delivered twice (at-least-once) leaves the same rows.
--
--   psql -f schema.sql

CREATE TABLE IF NOT EXISTS patient (
  mrn         text PRIMARY KEY,          -- PID-3.1
  family      text,                      -- PID-5.1
  given       text,                      -- PID-5.2
  birth_date  text,                      -- PID-7
  sex         text,                      -- PID-8
  updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS orders (
  msg_id      text PRIMARY KEY,          -- MSH-10
  mrn         text NOT NULL,             -- PID-3.1
  placer      text,                      -- OBR-2
  filler      text,                      -- OBR-3
  service     text,                      -- OBR-4.1
  status      text                       -- OBR-25
);

CREATE TABLE IF NOT EXISTS observation (
  msg_id      text NOT NULL,             -- MSH-10
  set_id      integer NOT NULL,          -- OBX-1
  code        text NOT NULL,             -- OBX-3.1
  name        text,                      -- OBX-3.2
  value       text,                      -- OBX-5
  units       text,                      -- OBX-6
  ref_range   text,                      -- OBX-7
  flag        text,                      -- OBX-8
  status      text,                      -- OBX-11
  PRIMARY KEY (msg_id, set_id)
);
