"""Drives gangway's Admin API with aio-kong (PyPI), as a Python service would: CRUD of
services, routes, consumers, plugins and key-auth credentials, then a kongfig-style apply of a
YAML file through aio-kong's own CLI. Exits non-zero, naming the step, on any mismatch."""

import asyncio
import sys

import yaml
from kong.cli import kong as kong_cli
from kong.client import Kong, KongResponseError


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


async def crud(url: str) -> None:
    async with Kong(url=url) as cli:
        svc = await cli.services.create(name="svc", host="example.com", port=8080)
        check(svc.name == "svc" and svc.data["port"] == 8080, "create a service")
        svc = await cli.services.update("svc", path="/v1", retries=2)
        check(svc.data["path"] == "/v1" and svc.data["retries"] == 2, "update a service")
        route = await svc.routes.create(name="r", paths=["/r"])
        check(route.data["service"]["id"] == svc.id, "a route under its service")
        routes = await svc.routes.get_full_list()
        check([r.name for r in routes] == ["r"], "list a service's routes")
        plugin = await svc.plugins.create(name="key-auth", config={"key_names": ["x-key"]})
        check(plugin.data["config"]["key_names"] == ["x-key"], "a plugin with its config")
        listed = await cli.plugins.get_full_list()
        check(any(p["id"] == plugin.id for p in listed), "list every plugin")

        consumer = await cli.consumers.create(username="alice", custom_id="c-1")
        key = await consumer.keyauths.create()
        check(len(key.data["key"]) == 32, "a key the server made")
        again = await consumer.keyauths.get_list()
        check([k["key"] for k in again] == [key.data["key"]], "list a consumer's keys")
        acl = await consumer.acls.create(group="gold")
        check(acl.data["group"] == "gold", "an ACL group")
        check(await cli.consumers.has("alice"), "find a consumer by username")
        try:
            await cli.consumers.create(username="alice")
            check(False, "a duplicate username is refused")
        except KongResponseError as exc:
            check(exc.status == 409, f"a duplicate username is 409, got {exc.status}")

        await consumer.keyauths.delete(key.id)
        check(await consumer.keyauths.get_list() == [], "delete a key")
        await cli.consumers.delete("alice")
        check(not await cli.consumers.has("alice"), "delete a consumer")
        # aio-kong deletes a service's routes and plugins, then the service.
        await cli.services.delete("svc")
        check(not await cli.services.has("svc"), "delete a service")


def apply_yaml(url: str, path: str) -> None:
    try:
        kong_cli(["yaml", path, "--url", url], standalone_mode=False)
    except SystemExit as exc:
        check(exc.code in (0, None), f"aio-kong yaml exited {exc.code}")


async def applied(url: str) -> None:
    async with Kong(url=url) as cli:
        svc = await cli.services.get("applied")
        routes = await svc.routes.get_full_list()
        check([r.name for r in routes] == ["ar"], "the applied route")
        plugins = await svc.plugins.get_full_list()
        check([p["name"] for p in plugins] == ["correlation-id"], "the applied plugin")
        bob = await cli.consumers.get("bob")
        groups = [a["group"] for a in await bob.acls.get_list()]
        check(groups == ["gold"], "the applied group")
        keys = [k["key"] for k in await bob.keyauths.get_list()]
        check(keys == ["bob-key"], "the applied key")


def main() -> None:
    url, config = sys.argv[1], sys.argv[2]
    asyncio.run(crud(url))
    apply_yaml(url, config)
    asyncio.run(applied(url))
    # Applying again changes nothing and fails nothing.
    apply_yaml(url, config)
    asyncio.run(applied(url))
    with open(config) as f:
        yaml.safe_load(f)
    print("aio-kong: ok")


if __name__ == "__main__":
    main()
