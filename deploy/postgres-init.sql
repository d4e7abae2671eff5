-- Runs once, when the PostgreSQL volume is first initialised: a database of Engram's own for
-- transcripts, beside Temporal's own (deploy/temporal-setup.sh).
CREATE DATABASE engram;
