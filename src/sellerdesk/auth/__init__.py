"""Authentication: passwords, JWTs, refresh-token rotation, Supabase tokens, login throttling."""
