//! Continuous backups of control.db and every tenant file to S3 as Litestream-compatible replicas (issue #19).
//! So far: the LTX codec (`ltx.rs`) that writes and reads the replica files.

pub mod ltx;
