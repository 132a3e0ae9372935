/** Image URLs refused without any connection, in every spelling: private and special addresses, odd schemes, unparsable ones. */
import type { Corpus } from "./builder.ts";

/** Image URLs refused without any connection, in every spelling. */
export function imageUrls(c: Corpus, n: number): string[] {
  const fixed = [
    "http://127.0.0.1/cat.jpg",
    "http://127.0.0.1:1/",
    "https://127.0.0.1/",
    "http://127.1/",
    "http://127.0.1/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://017700000001/",
    "http://0177.0.0.1/",
    "http://0x7f.0.0.1/",
    "http://127.000.000.001/",
    "http://0x7f.1/",
    "http://[::1]/",
    "http://[0:0:0:0:0:0:0:1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[::127.0.0.1]/",
    "http://[64:ff9b::127.0.0.1]/",
    "http://0.0.0.0/",
    "http://0/",
    "http://0.0.0.0:8080/",
    "http://[::]/",
    "http://169.254.169.254/latest/meta-data/",
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://169.254.169.254/computeMetadata/v1/",
    "http://169.254.169.254/metadata/instance?api-version=2021-02-01",
    "http://2852039166/",
    "http://0xa9fea9fe/",
    "http://0251.0376.0251.0376/",
    "http://0xa9.0xfe.0xa9.0xfe/",
    "http://169.254.43518/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://100.100.100.200/latest/meta-data/",
    "http://10.0.0.1/",
    "http://10.255.255.255:65535/",
    "http://172.16.0.1/",
    "http://172.31.255.255/",
    "http://192.168.0.1/",
    "http://192.168.1.1:8080/admin",
    "http://100.64.0.1/",
    "http://192.0.0.192/",
    "http://192.0.2.1/",
    "http://198.18.0.1/",
    "http://198.51.100.7/",
    "http://203.0.113.9/",
    "http://224.0.0.1/",
    "http://239.255.255.250:1900/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    "http://[fe80::1]/",
    "http://[fe80::a00:27ff:fe4e:66a1]/",
    "http://[fc00::1]/",
    "http://[ff02::1]/",
    "http://[2001:db8::1]/",
    "http://localhost/",
    "http://localhost:4222/",
    "http://LOCALHOST/",
    "http://LocalHost:8222/varz",
    "https://localhost/",
    "http://\u24db\u24de\u24d2\u24d0\u24db\u24d7\u24de\u24e2\u24e3/",
    "http://\uff11\uff12\uff17.0.0.1/",
    "http://12\uff17.0.0.1/",
    "HTTP://127.0.0.1/",
    "hTTpS://[::1]/",
    "http:\\\\127.0.0.1\\x.jpg",
    " http://127.0.0.1/ ",
    "http://127.0.0.1\t/",
    "http://127.0.0.1\n/x",
    "http://user:pass@127.0.0.1/",
    "http://a@[::1]/",
    "http://:@127.0.0.1/",
    "http://x:y@localhost/",
    "http://127.0.0.1#@192.0.2.1/",
    "http://127.0.0.1/?u=http://169.254.169.254/",
    "http://127.0.0.1/\u00fcn\u00efc\u00f8d\u00e9.png",
    "http://127.0.0.1/%2e%2e/%2e%2e/etc/passwd",
    "file:///etc/passwd",
    "file://localhost/etc/passwd",
    "file:///proc/self/environ",
    "ftp://127.0.0.1/x.jpg",
    "gopher://127.0.0.1:6379/_INFO",
    "dict://127.0.0.1:11211/stat",
    "ldap://127.0.0.1/",
    "ws://127.0.0.1/",
    "wss://[::1]/",
    "data:image/png;base64,iVBORw0KGgo=",
    "javascript:alert(1)",
    "blob:http://127.0.0.1/0e4a",
    "about:blank",
    "mailto:a@127.0.0.1",
    "tftp://127.0.0.1/x",
    "jar:file:///x!/y",
    "view-source:http://127.0.0.1/",
    "sftp://127.0.0.1/",
    "ssh://127.0.0.1/",
    "nats://127.0.0.1:4222/",
    "unix:/var/run/docker.sock",
    "http://",
    "http:///",
    "http://[::1",
    "http://127.0.0.1:99999/",
    "http://[fe80::1%25eth0]/",
    "://127.0.0.1",
    "127.0.0.1/x.jpg",
    "//127.0.0.1/x",
    "http://256.256.256.256/",
    "http://0x100000000/",
    "http://127.0.0.1.5/",
    "http://127.0.0.1 /",
    "http://\u0661\u0662\u0667.0.0.1/",
    "http://[1::2::3]/",
    "http://[::1]:-1/",
    "not a url",
    "x",
    `http://127.0.0.1/${"a".repeat(4100)}`,
    `http://localhost/?q=${"%41".repeat(1400)}`,
  ];
  const out = [...fixed];
  const v4Ranges: [number, number][] = [
    [0x7f000000, 8],
    [0x0a000000, 8],
    [0xac100000, 12],
    [0xc0a80000, 16],
    [0xa9fe0000, 16],
    [0x64400000, 10],
    [0x00000000, 8],
    [0xe0000000, 4],
    [0xf0000000, 4],
    [0xc6120000, 15],
    [0xc0000000, 24],
    [0xc0000200, 24],
    [0xc6336400, 24],
    [0xcb007100, 24],
  ];
  const parts = (n32: number) => [n32 >>> 24, (n32 >>> 16) & 255, (n32 >>> 8) & 255, n32 & 255];
  const oct = (x: number) => `0${x.toString(8)}`;
  const hex = (x: number) => `0x${x.toString(16)}`;
  const spell = (n32: number): string => {
    const [a, b, cc, d] = parts(n32) as [number, number, number, number];
    switch (c.int(0, 11)) {
      case 0:
        return `${a}.${b}.${cc}.${d}`;
      case 1:
        return String(n32 >>> 0);
      case 2:
        return hex(n32 >>> 0);
      case 3:
        return oct(n32 >>> 0);
      case 4:
        return [a, b, cc, d].map(hex).join(".");
      case 5:
        return [a, b, cc, d].map(oct).join(".");
      case 6:
        return `${a}.${b}.${(cc << 8) | d}`;
      case 7:
        return `${a}.${(b << 16) | (cc << 8) | d}`;
      case 8:
        return [a, b, cc, d].map((x) => c.pick([String(x), hex(x), oct(x)])).join(".");
      case 9:
        return `[::ffff:${a}.${b}.${cc}.${d}]`;
      case 10:
        return `[64:ff9b::${a}.${b}.${cc}.${d}]`;
      default:
        return `[::ffff:${((a << 8) | b).toString(16)}:${((cc << 8) | d).toString(16)}]`;
    }
  };
  const v6 = (): string => {
    const g = () => c.int(0, 0xffff).toString(16);
    switch (c.int(0, 4)) {
      case 0:
        return `[fe80::${g()}:${g()}:${g()}:${g()}]`;
      case 1:
        return `[fd${c.int(0, 255).toString(16).padStart(2, "0")}:${g()}:${g()}::${g()}]`;
      case 2:
        return `[ff0${c.int(0, 15).toString(16)}::${g()}]`;
      case 3:
        return `[2001:db8:${g()}::${g()}]`;
      default:
        return `[::${c.int(1, 0xffff).toString(16)}]`;
    }
  };
  const ports = [
    "",
    ":22",
    ":25",
    ":80",
    ":443",
    ":2375",
    ":3306",
    ":4222",
    ":5432",
    ":6379",
    ":8080",
    ":8222",
    ":9200",
    ":11211",
    ":65535",
  ];
  const paths = [
    "/",
    "/x.jpg",
    "/cat.png?size=large",
    "/latest/meta-data/",
    "/admin#frag",
    "/%F0%9F%90%88.jpg",
    "/a/../b.jpg",
    "/.env",
    "/\u00e9t\u00e9.jpg",
  ];
  while (out.length < n) {
    let host: string;
    if (c.rand() < 0.8) {
      const [base, bits] = c.pick(v4Ranges);
      const n32 = (base | (Math.floor(c.rand() * 2 ** (32 - bits)) >>> 0)) >>> 0;
      host = spell(n32);
    } else {
      host = v6();
    }
    out.push(`${c.pick(["http", "https", "HTTP", "http", "http"])}://${host}${c.pick(ports)}${c.pick(paths)}`);
  }
  return out;
}
