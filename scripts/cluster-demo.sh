#!/usr/bin/env bash
# Rooms across relays: starts a redis-server and three relays on loopback (one cluster, one TLS
# identity), then three voice-bots entering through DIFFERENT relays into the same room: the
# first join places the room on its relay, the other bots are redirected there and they hear each
# other. Then the hosting relay is killed with SIGKILL: the bots reconnect through the relay they
# entered by, the room is placed again and they keep talking. A fourth bot, dave, sits in another
# room (Lobby) placed on relay 3: the cluster's directory shows him in the others' channel trees
# and them in his. Prints, for each bot, its disconnects/redirects, what it heard since it last
# (re)joined, and its channel tree 8 s in (before the first bot ends) as built from its presence events (`↗`: a member of
# a room hosted by another relay than the bot's). Files land in target/cluster-demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
cargo build --release --bin relay --bin voice-bot
bin="${CARGO_TARGET_DIR:-target}/release"
out=target/cluster-demo
rm -rf "$out" && mkdir -p "$out"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no >"$out/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done

# Relay i prints `listening on ADDR` then `fingerprint …`; all share one identity directory (the
# first creates it), so the bots pin one fingerprint for the whole cluster.
addrs=()
relay_pids=()
for i in 1 2 3; do
  "$bin/relay" --listen 127.0.0.1:0 --identity-dir "$out/identity" \
    --redis "redis://127.0.0.1:$port/" --lease-ms 1500 >"$out/relay$i.out" 2>"$out/relay$i.log" &
  pids+=($!); relay_pids+=($!)
  for _ in $(seq 300); do [ "$(wc -l <"$out/relay$i.out" 2>/dev/null || echo 0)" -ge 2 ] && break; sleep 0.1; done
  [ "$(wc -l <"$out/relay$i.out")" -ge 2 ] || { echo "cluster-demo: relay $i did not start (see $out/relay$i.log)" >&2; exit 1; }
  first=$(sed -n 1p "$out/relay$i.out"); second=$(sed -n 2p "$out/relay$i.out")
  addrs+=("${first#listening on }")
  fp=${second#fingerprint }
done
echo "redis 127.0.0.1:$port; relays ${addrs[*]}; fingerprint $fp"

bot="$bin/voice-bot --fingerprint $fp --channel 2"
# Access tokens signed with the shared identity's key, which every relay of the cluster accepts.
tok() { "$bin/relay" token --identity-dir "$out/identity" --name "$1"; }
# A short-lived bot entering through relay 1 places the room there; alice and carol enter
# through relay 2, bob through relay 3: all three are redirected to relay 1.
$bot --server "${addrs[0]}" --name seed --token "$(tok seed)" --duration 0.5 >"$out/seed.jsonl"
$bot --server "${addrs[1]}" --name alice --token "$(tok alice)" --tone 440 --duration 9 >"$out/alice.jsonl" &
a=$!; pids+=($a)
$bot --server "${addrs[2]}" --name bob --token "$(tok bob)" --tone 660 --duration 9 >"$out/bob.jsonl" &
b=$!; pids+=($b)
$bot --server "${addrs[1]}" --name carol --token "$(tok carol)" --record "$out/carol.wav" --duration 9 >"$out/carol.jsonl" &
c=$!; pids+=($c)
"$bin/voice-bot" --fingerprint "$fp" --channel 1 --server "${addrs[2]}" --name dave --token "$(tok dave)" --duration 9 >"$out/dave.jsonl" &
d=$!; pids+=($d)
sleep 3.5
echo "killing the room's host (relay 1, pid ${relay_pids[0]}) with SIGKILL"
kill -9 "${relay_pids[0]}"
wait $a $b $c $d || true
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
for who in ("alice", "bob", "carol"):
    lines = [json.loads(l) for l in open(f"{out}/{who}.jsonl")]
    evs = [l["event"] for l in lines if "event" in l]
    disc = [e["Disconnected"]["reason"] for e in evs if isinstance(e, dict) and "Disconnected" in e]
    stats = [l["stats"] for l in lines if "stats" in l]
    final = {r["name"] or str(r["session"]): r["stream"]["packets_received"] for r in stats[-1]["remotes"]}
    print(f"{who}: {len(disc)} disconnects/redirects: {disc[:2]} ... {disc[-1:]}")
    print(f"  heard since the last (re)join, packets: {final}")
REMOTE = 0x80000000
for who in ("alice", "bob", "carol", "dave"):
    # The channel tree as a client keeps it: the Welcome's list, its own channel's presence,
    # and ChannelMembers replacing a channel's list (members on other relays: sessions >= 0x80000000).
    me, names, tree = None, {}, {}
    for l in open(f"{out}/{who}.jsonl"):
        l = json.loads(l)
        if l["t_ms"] > 8000:
            break
        ev = l.get("event")
        if not isinstance(ev, dict):
            continue
        (kind, v), = ev.items()
        if kind == "Connected":
            me = v["session"]
        elif kind == "ChannelList":
            names = {c["id"]: c["name"] for c in v["channels"]}
            tree = {c["id"]: {u["session"]: u["name"] for u in c["users"]} for c in v["channels"]}
        elif kind == "ChannelJoined":
            c = v["channel"]
            for users in tree.values():
                users.pop(me, None)
            kept = {s: n for s, n in tree.get(c["id"], {}).items() if s >= REMOTE}
            tree[c["id"]] = kept | {u["session"]: u["name"] for u in c["users"]}
        elif kind == "ChannelLeft":
            tree.get(v["channel"], {}).pop(me, None)
        elif kind == "UserJoined":
            tree.setdefault(v["channel"], {})[v["user"]["session"]] = v["user"]["name"]
        elif kind == "UserLeft":
            tree.get(v["channel"], {}).pop(v["session"], None)
        elif kind == "ChannelMembers":
            tree[v["channel"]] = {u["session"]: u["name"] for u in v["users"]}
    shown = [f"{names.get(ch, ch)}: " + ", ".join(sorted(n + ("↗" if s >= REMOTE else "") for s, n in users.items()))
             for ch, users in sorted(tree.items()) if users]
    print(f"{who}'s channel tree 8 s in: " + " | ".join(shown))
print(f"recording: {out}/carol.wav")
PY
