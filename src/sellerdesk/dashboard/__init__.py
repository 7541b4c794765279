"""The web dashboard: store admins and API customers, server-rendered under `/dashboard`."""
