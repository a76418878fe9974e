//! A local Dfns API simulator (placeholder until its issue lands).
