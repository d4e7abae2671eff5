-- Runs once, when the PostgreSQL volume is first initialised: a database of Engram's own for
-- transcripts, beside the ones Temporal's auto-setup creates.
CREATE DATABASE engram;
