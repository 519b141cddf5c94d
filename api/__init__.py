"""The read API: aiohttp over asyncpg, through a role that cannot write."""
