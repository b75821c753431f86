"""HTTP: routers, the signing gateway, schemas and error mapping. Thin: it calls services only."""
