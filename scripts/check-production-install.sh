#!/usr/bin/env bash
# A production install works: a fresh clone of this checkout's HEAD, `npm ci --omit=dev` (no TypeScript, no test
# or benchmark tooling of the root), then `servegraph check`, and what `npm start -- chain` runs answering over
# HTTP and NATS. Bounded (every wait has a limit); the clone and the graph are removed whatever happens.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
dir="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT

git clone -q "$repo" "$dir/app"
cd "$dir/app"
npm ci --omit=dev --no-audit --no-fund --prefer-offline >/dev/null
if [ -e node_modules/typescript ]; then echo "production install has typescript: a dev dependency leaked" >&2; exit 1; fi
node --import tsx ops/cli.ts check >/dev/null
echo "production install: servegraph check passes"

# What `npm start -- chain` runs (package.json), with the CLI exec'd so that $pid is `up` itself: Ctrl-C (SIGINT)
# reaches it, and it stops its nodes and broker.
start="$(node -p 'require("./package.json").scripts.start')"
[ "$start" = "node ops/bin/bootstrap.mjs && node --import tsx ops/cli.ts up" ] || { echo "npm start is now: $start (update this check)" >&2; exit 1; }
(node ops/bin/bootstrap.mjs && SG_STATE_FILE="$dir/state.json" SG_LOG_LEVEL=warn exec node --import tsx ops/cli.ts up chain --port 0 --json) >"$dir/up.out" 2>"$dir/up.err" &
pid=$!
url=""
for _ in $(seq 1 300); do
  url="$(node -e 'const l=require("fs").readFileSync(process.argv[1],"utf8").split("\n").find((x)=>x.startsWith("{"));if(l)process.stdout.write(JSON.parse(l).ingress??"")' "$dir/up.out" 2>/dev/null || true)"
  [ -n "$url" ] && break
  kill -0 "$pid" 2>/dev/null || { echo "npm start exited:" >&2; tail -20 "$dir/up.err" >&2; exit 1; }
  sleep 0.2
done
[ -n "$url" ] || { echo "npm start did not come up in 60 s" >&2; tail -20 "$dir/up.err" >&2; exit 1; }
answer="$(curl -sf --max-time 10 "$url/greeting/ada")"
case "$answer" in *'"message":"Hello, ada!"'*) ;; *) echo "unexpected answer: $answer" >&2; exit 1 ;; esac
nats="$(SG_STATE_FILE="$dir/state.json" node --import tsx ops/cli.ts request sg.v1.greeter.greet '{"name":"lin"}')"
case "$nats" in *'Hello, lin!'*) ;; *) echo "unexpected NATS answer: $nats" >&2; exit 1 ;; esac
echo "production install: npm start serves $url/greeting/ada and sg.v1.greeter.greet"
