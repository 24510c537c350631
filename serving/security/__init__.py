"""Authentication (passwords, tokens, API keys), roles and permissions, and exam scope."""
