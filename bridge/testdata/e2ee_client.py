#!/usr/bin/python3
"""An independent E2EE Matrix client (matrix-nio with python-olm) standing in
for the user's client in the encrypted-DM tests.

Usage: e2ee_client.py HOMESERVER USER_ID PASSWORD STORE_DIR

Reads one JSON command per line on stdin and answers each with one JSON line
on stdout:
  {"cmd": "create_dm", "ghost": ID, "text": T}  profile lookup, then an
      encrypted DM created as Element X does (is_direct, trusted_private_chat,
      m.room.encryption in initial_state) and T sent at once; with
      "rotation_msgs": N the room's keys rotate every N messages
      -> {"room_id", "event_id"}
  {"cmd": "join_invite", "timeout": S}  joins the first room it is invited to
      (or takes the first new room the double puppet joined it to)
      -> {"room_id"}
  {"cmd": "use_room", "room_id": R, "member": M, "timeout": S}  moves to R,
      a room another client of the user's joined it to (the upgrade of the
      DM): syncs until the client is in R with M, and only R's events count
      from then on -> {"room_id", "encrypted"}
  {"cmd": "enable_encryption"}  sends m.room.encryption into the room -> {}
  {"cmd": "send", "text": T}                    -> {"event_id"}
  {"cmd": "react", "target": E, "key": K}       -> {"event_id"}
  {"cmd": "edit", "target": E, "text": T}       -> {"event_id"}
  {"cmd": "redact", "target": E}                -> {"event_id"}
  {"cmd": "expect_reaction", "key": K, "timeout": S}
      -> {"sender", "key", "target", "encrypted"} or {"error"}
  {"cmd": "send_file", "name": N, "data": D}  uploads D (text) encrypted and
      sends it as an encrypted m.file -> {"event_id"}
  {"cmd": "expect_file", "name": N, "timeout": S}  waits for an encrypted file
      named N from someone else, downloads and decrypts it
      -> {"sender", "data", "plain_url"} or {"error"}
  {"cmd": "send_unknown_session"}  an m.room.encrypted event under a session
      no one was ever given -> {"event_id"}
  {"cmd": "expect", "body": B, "timeout": S}  syncs until a message with body
      B from someone else arrives in the room
      -> {"sender", "body", "encrypted", "verified", "sender_key", "device_id",
          "ghost_devices", "sender_key_owner", "reply_to"} or {"error"}
  {"cmd": "count", "body": B, "wait": S}  syncs for S seconds, then counts
      the messages with body B from someone else -> {"count"}
  "own": true in expect, expect_reaction, expect_file and count looks for events sent as this
      user by someone else (the bridge's double puppet) instead: events this
      client did not send itself.
"""
import asyncio
import io
import json
import secrets
import sys
import urllib.request

from nio import AsyncClient, AsyncClientConfig, MegolmEvent, RoomCreateResponse
from nio.crypto.attachments import decrypt_attachment
from nio.events.room_events import RoomEncryptedMedia, RoomMessageNotice, RoomMessageText


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Session:
    def __init__(self, hs, user_id, password, store):
        cfg = AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True)
        self.client = AsyncClient(hs, user_id, store_path=store, config=cfg)
        self.hs = hs
        self.password = password
        self.room_id = None
        self.seen = []  # (event, encrypted)
        self.sent = set()  # ids of the events this client sent

    async def login(self):
        resp = await self.client.login(self.password, device_name="nio-test")
        if not hasattr(resp, "access_token"):
            raise RuntimeError("login failed: %r" % resp)
        # A real client publishes its device keys and one-time keys (nio
        # does so only in sync_forever, so here by hand).
        if self.client.should_upload_keys:
            await self.client.keys_upload()
        await self.client.sync(timeout=0, full_state=True)
        self.rooms_at_login = set(self.client.rooms)

    async def sync_once(self, timeout_ms):
        resp = await self.client.sync(timeout=timeout_ms)
        rooms = getattr(resp, "rooms", None)
        if rooms is None:
            return
        room = rooms.join.get(self.room_id)
        if room is None:
            return
        for evt in room.timeline.events:
            self.seen.append(evt)
        if self.client.should_upload_keys:
            await self.client.keys_upload()
        if self.client.should_query_keys:
            await self.client.keys_query()

    async def create_dm(self, ghost, text, rotation_msgs=None):
        # Element X shows the user's profile before starting the chat.
        await self.client.get_profile(ghost)
        encryption = {"algorithm": "m.megolm.v1.aes-sha2"}
        if rotation_msgs:
            encryption["rotation_period_msgs"] = rotation_msgs
        resp = await self.client.room_create(
            is_direct=True,
            preset=__import__("nio").RoomPreset.trusted_private_chat,
            invite=[ghost],
            initial_state=[{"type": "m.room.encryption", "state_key": "",
                            "content": encryption}],
        )
        if not isinstance(resp, RoomCreateResponse):
            return {"error": "create: %r" % resp}
        self.room_id = resp.room_id
        # Learn the room (members, encryption) and send at once.
        while self.room_id not in self.client.rooms or ghost not in self.client.rooms[self.room_id].users:
            await self.client.sync(timeout=1000)
        sent = await self.send(text)
        sent["room_id"] = self.room_id
        return sent

    async def join_invite(self, timeout):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # The bridge's double puppet may join the user before a sync shows
        # the invite: then the new room is joined already.
        new_joined = lambda: set(self.client.rooms) - self.rooms_at_login
        while not self.client.invited_rooms and not new_joined():
            if loop.time() > deadline:
                return {"error": "no invite"}
            await self.client.sync(timeout=2000)
        if self.client.invited_rooms:
            self.room_id = next(iter(self.client.invited_rooms))
            resp = await self.client.join(self.room_id)
            if not hasattr(resp, "room_id"):
                return {"error": "join: %r" % resp}
        else:
            self.room_id = next(iter(new_joined()))
        while self.room_id not in self.client.rooms or self.client.user_id not in self.client.rooms[self.room_id].users:
            await self.sync_once(1000)
        return await self.read_encryption()

    async def read_encryption(self):
        # nio may not have the room's encryption state from the sync that
        # brought the room; read it, as a client does before sending.
        state = await self.client.room_get_state_event(self.room_id, "m.room.encryption")
        if getattr(state, "content", {}).get("algorithm"):
            self.client.rooms[self.room_id].encrypted = True
        return {"room_id": self.room_id, "encrypted": self.client.rooms[self.room_id].encrypted}

    async def use_room(self, room_id, member, timeout):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self.room_id = room_id
        self.seen = []
        while room_id not in self.client.rooms or member not in self.client.rooms[room_id].users:
            if loop.time() > deadline:
                return {"error": "not in %s with %s" % (room_id, member)}
            await self.sync_once(1000)
        return await self.read_encryption()

    async def enable_encryption(self):
        resp = await self.client.room_put_state(self.room_id, "m.room.encryption",
                                                {"algorithm": "m.megolm.v1.aes-sha2"})
        if not hasattr(resp, "event_id"):
            return {"error": "enable encryption: %r" % resp}
        while not self.client.rooms[self.room_id].encrypted:
            await self.sync_once(1000)
        return {}

    def wanted(self, evt, own):
        if own:
            return evt.sender == self.client.user_id and evt.event_id not in self.sent
        return evt.sender != self.client.user_id

    async def send(self, text):
        resp = await self.client.room_send(self.room_id, "m.room.message",
                                           {"msgtype": "m.text", "body": text},
                                           ignore_unverified_devices=True)
        if hasattr(resp, "event_id"):
            self.sent.add(resp.event_id)
        return {"event_id": getattr(resp, "event_id", None), "error": None if hasattr(resp, "event_id") else repr(resp)}

    async def send_content(self, evtype, content):
        resp = await self.client.room_send(self.room_id, evtype, content, ignore_unverified_devices=True)
        if not hasattr(resp, "event_id"):
            return {"error": repr(resp)}
        self.sent.add(resp.event_id)
        return {"event_id": resp.event_id}

    async def redact(self, target):
        resp = await self.client.room_redact(self.room_id, target)
        if not hasattr(resp, "event_id"):
            return {"error": repr(resp)}
        return {"event_id": resp.event_id}

    async def expect_reaction(self, key, timeout, own=False):
        async def found(evt):
            src = evt.source or {}
            rel = src.get("content", {}).get("m.relates_to", {})
            if self.wanted(evt, own) and src.get("type") == "m.reaction" and rel.get("key") == key:
                return {"sender": evt.sender, "key": key, "target": rel.get("event_id"),
                        "encrypted": bool(getattr(evt, "decrypted", False))}
            return None

        return await self.wait_for(timeout, found, lambda: {
            "error": "timeout", "seen": [(e.source or {}).get("type") for e in self.seen]})

    async def send_file(self, name, data):
        raw = data.encode()
        resp, keys = await self.client.upload(io.BytesIO(raw), content_type="text/plain", filename=name,
                                              encrypt=True, filesize=len(raw))
        if not hasattr(resp, "content_uri"):
            return {"error": "upload: %r" % resp}
        keys["url"] = resp.content_uri
        return await self.send_content("m.room.message", {
            "msgtype": "m.file", "body": name, "info": {"size": len(raw), "mimetype": "text/plain"}, "file": keys})

    async def expect_file(self, name, timeout, own=False):
        async def found(evt):
            if not self.wanted(evt, own) or getattr(evt, "body", None) != name:
                return None
            content = evt.source.get("content", {})
            if not isinstance(evt, RoomEncryptedMedia):
                return {"error": "not an encrypted file", "plain_url": content.get("url"),
                        "type": type(evt).__name__}
            resp = await self.client.download(evt.url)
            if not hasattr(resp, "body"):
                return {"error": "download: %r" % resp}
            data = decrypt_attachment(resp.body, evt.key["k"], evt.hashes["sha256"], evt.iv)
            return {"sender": evt.sender, "data": data.decode(), "plain_url": content.get("url"),
                    "encrypted": bool(getattr(evt, "decrypted", False))}

        return await self.wait_for(timeout, found, lambda: {"error": "timeout"})

    def send_unknown_session(self):
        olm = self.client.olm
        content = {
            "algorithm": "m.megolm.v1.aes-sha2",
            "sender_key": olm.account.identity_keys["curve25519"],
            "device_id": self.client.device_id,
            "session_id": secrets.token_urlsafe(32)[:43].replace("-", "A").replace("_", "B"),
            "ciphertext": "AwgAEn" + "A" * 200,
        }
        url = "%s/_matrix/client/v3/rooms/%s/send/m.room.encrypted/%s" % (
            self.hs, urllib.parse.quote(self.room_id), secrets.token_hex(8))
        req = urllib.request.Request(url, data=json.dumps(content).encode(), method="PUT",
                                     headers={"Authorization": "Bearer " + self.client.access_token,
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req) as r:
            return {"event_id": json.load(r)["event_id"]}

    async def expect(self, body, timeout, own=False):
        async def found(evt):
            if self.wanted(evt, own) and isinstance(evt, (RoomMessageText, RoomMessageNotice)) \
                    and evt.body.startswith(body):
                return self.describe(evt)
            return None

        def timed_out():
            undecryptable = sum(1 for e in self.seen if isinstance(e, MegolmEvent))
            return {"error": "timeout", "undecryptable": undecryptable,
                    "bodies": [getattr(e, "body", type(e).__name__) for e in self.seen]}

        return await self.wait_for(timeout, found, timed_out)

    async def wait_for(self, timeout, found, timed_out):
        """Syncs until found(evt) gives an answer for one of the events seen
        (retrying those not decrypted yet first, as their keys may have come
        since), and returns it; after timeout seconds, returns timed_out()."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self.retry_undecrypted()
            for evt in self.seen:
                answer = await found(evt)
                if answer is not None:
                    return answer
            if loop.time() > deadline:
                return timed_out()
            await self.sync_once(2000)

    async def count(self, body, wait, own=False):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while loop.time() < deadline:
            await self.sync_once(1000)
        self.retry_undecrypted()
        return {"count": sum(1 for e in self.seen if self.wanted(e, own)
                             and isinstance(e, (RoomMessageText, RoomMessageNotice)) and e.body == body)}

    def retry_undecrypted(self):
        # A room event can come down before the to-device message with its
        # key (they are different streams); try again once keys arrived.
        for i, evt in enumerate(self.seen):
            if isinstance(evt, MegolmEvent):
                try:
                    dec = self.client.decrypt_event(evt)
                except Exception:  # still no key
                    continue
                self.seen[i] = dec

    def describe(self, evt):
        devices = self.client.device_store.active_user_devices(evt.sender)
        by_key = {d.curve25519: d.id for d in devices}
        sender_key = getattr(evt, "sender_key", None)
        relates = evt.source.get("content", {}).get("m.relates_to", {})
        owner = None
        for d in self.client.device_store:
            if sender_key is not None and d.curve25519 == sender_key:
                owner = d.user_id
        return {
            "event_id": evt.event_id,
            "sender": evt.sender,
            "body": evt.body,
            "encrypted": bool(getattr(evt, "decrypted", False)),
            "verified": bool(getattr(evt, "verified", False)),
            "sender_key_owner": owner,
            "sender_key": sender_key,
            "device_id": by_key.get(sender_key),
            "ghost_devices": sorted(by_key.values()),
            "reply_to": relates.get("m.in_reply_to", {}).get("event_id"),
        }


async def main():
    hs, user_id, password, store = sys.argv[1:5]
    s = Session(hs, user_id, password, store)
    await s.login()
    out({"ready": True, "device_id": s.client.device_id})
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        cmd = json.loads(line)
        try:
            if cmd["cmd"] == "create_dm":
                out(await s.create_dm(cmd["ghost"], cmd["text"], cmd.get("rotation_msgs")))
            elif cmd["cmd"] == "join_invite":
                out(await s.join_invite(cmd.get("timeout", 60)))
            elif cmd["cmd"] == "use_room":
                out(await s.use_room(cmd["room_id"], cmd["member"], cmd.get("timeout", 60)))
            elif cmd["cmd"] == "enable_encryption":
                out(await s.enable_encryption())
            elif cmd["cmd"] == "react":
                out(await s.send_content("m.reaction", {"m.relates_to": {
                    "rel_type": "m.annotation", "event_id": cmd["target"], "key": cmd["key"]}}))
            elif cmd["cmd"] == "edit":
                out(await s.send_content("m.room.message", {
                    "msgtype": "m.text", "body": "* " + cmd["text"],
                    "m.new_content": {"msgtype": "m.text", "body": cmd["text"]},
                    "m.relates_to": {"rel_type": "m.replace", "event_id": cmd["target"]}}))
            elif cmd["cmd"] == "redact":
                out(await s.redact(cmd["target"]))
            elif cmd["cmd"] == "expect_reaction":
                out(await s.expect_reaction(cmd["key"], cmd.get("timeout", 60), cmd.get("own", False)))
            elif cmd["cmd"] == "send":
                out(await s.send(cmd["text"]))
            elif cmd["cmd"] == "send_file":
                out(await s.send_file(cmd["name"], cmd["data"]))
            elif cmd["cmd"] == "expect_file":
                out(await s.expect_file(cmd["name"], cmd.get("timeout", 60), cmd.get("own", False)))
            elif cmd["cmd"] == "send_unknown_session":
                out(s.send_unknown_session())
            elif cmd["cmd"] == "count":
                out(await s.count(cmd["body"], cmd.get("wait", 5), cmd.get("own", False)))
            elif cmd["cmd"] == "expect":
                out(await s.expect(cmd["body"], cmd.get("timeout", 60), cmd.get("own", False)))
            else:
                out({"error": "unknown command"})
        except Exception as e:  # the Go test reads the error
            out({"error": repr(e)})
    await s.client.close()


if __name__ == "__main__":
    import urllib.parse  # noqa: F401
    asyncio.run(main())
