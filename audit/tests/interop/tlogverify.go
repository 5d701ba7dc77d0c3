// tlogverify: an independent verifier for stadttor audit logs, built only on
// Go's reference golang.org/x/mod/sumdb/{note,tlog} (Debian package
// golang-golang-x-mod-dev). It shares no code with the Rust implementation.
//
//	tlogverify checkpoint  VKEY FILE        verify a signed checkpoint
//	tlogverify inclusion   VKEY PROOF.json  verify an inclusion proof
//	tlogverify consistency VKEY PROOF.json  verify a consistency proof
//	tlogverify tiles       VKEY DIR         authenticate every tile, entry and
//	                                        historical checkpoint of a log
//
// Prints "OK ..." and exits 0, or prints the error and exits 1.
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type checkpoint struct {
	origin string
	tree   tlog.Tree
}

func openCheckpoint(vkey string, msg []byte) (checkpoint, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return checkpoint{}, err
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return checkpoint{}, err
	}
	lines := strings.Split(strings.TrimSuffix(n.Text, "\n"), "\n")
	if len(lines) < 3 {
		return checkpoint{}, errors.New("checkpoint has fewer than 3 lines")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 {
		return checkpoint{}, fmt.Errorf("bad size %q", lines[1])
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != tlog.HashSize {
		return checkpoint{}, fmt.Errorf("bad root %q", lines[2])
	}
	var h tlog.Hash
	copy(h[:], root)
	return checkpoint{origin: lines[0], tree: tlog.Tree{N: size, Hash: h}}, nil
}

func hashes(in []string) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(in))
	for i, s := range in {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) != tlog.HashSize {
			return nil, fmt.Errorf("bad proof hash %q", s)
		}
		copy(out[i][:], b)
	}
	return out, nil
}

// c2spPath maps x/mod's tile path (tile/8/L/N, tile/8/data/N) to C2SP's
// (tile/L/N, tile/entries/N).
func c2spPath(t tlog.Tile) string {
	p := strings.TrimPrefix(t.Path(), "tile/8/")
	if strings.HasPrefix(p, "data/") {
		p = "entries/" + strings.TrimPrefix(p, "data/")
	}
	return "tile/" + p
}

type dirTiles struct{ dir string }

func (d dirTiles) Height() int { return 8 }

func (d dirTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		b, err := os.ReadFile(filepath.Join(d.dir, c2spPath(t)))
		if err != nil && t.W < 256 {
			// Partial tiles may be gone once the full tile exists.
			full := t
			full.W = 256
			b, err = os.ReadFile(filepath.Join(d.dir, c2spPath(full)))
			if err == nil && len(b) >= t.W*tlog.HashSize {
				b = b[:t.W*tlog.HashSize]
			}
		}
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

func (d dirTiles) SaveTiles([]tlog.Tile, [][]byte) {}

func readBundle(dir string, n int64, width int) ([][]byte, error) {
	t := tlog.Tile{H: 8, L: -1, N: n, W: width}
	b, err := os.ReadFile(filepath.Join(dir, c2spPath(t)))
	if err != nil && width < 256 {
		t.W = 256
		b, err = os.ReadFile(filepath.Join(dir, c2spPath(t)))
	}
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for len(b) > 0 && len(out) < width {
		if len(b) < 2 {
			return nil, fmt.Errorf("bundle %d: truncated length", n)
		}
		l := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+l {
			return nil, fmt.Errorf("bundle %d: truncated entry", n)
		}
		out = append(out, b[2:2+l])
		b = b[2+l:]
	}
	if len(out) != width {
		return nil, fmt.Errorf("bundle %d: %d entries, want %d", n, len(out), width)
	}
	return out, nil
}

func checkTiles(vkey, dir string) (string, error) {
	msg, err := os.ReadFile(filepath.Join(dir, "checkpoint"))
	if err != nil {
		return "", err
	}
	cp, err := openCheckpoint(vkey, msg)
	if err != nil {
		return "", err
	}
	thr := tlog.TileHashReader(cp.tree, dirTiles{dir})
	root, err := tlog.TreeHash(cp.tree.N, thr)
	if err != nil {
		return "", err
	}
	if root != cp.tree.Hash {
		return "", errors.New("tree hash from tiles differs from checkpoint")
	}
	// Every entry: its record hash must equal the authenticated leaf hash.
	for start := int64(0); start < cp.tree.N; start += 256 {
		width := cp.tree.N - start
		if width > 256 {
			width = 256
		}
		entries, err := readBundle(dir, start/256, int(width))
		if err != nil {
			return "", err
		}
		idx := make([]int64, width)
		for i := range idx {
			idx[i] = tlog.StoredHashIndex(0, start+int64(i))
		}
		leaves, err := thr.ReadHashes(idx)
		if err != nil {
			return "", fmt.Errorf("entry %d: %v", start, err)
		}
		for i, e := range entries {
			if tlog.RecordHash(e) != leaves[i] {
				return "", fmt.Errorf("entry %d: invalid transparency proof", start+int64(i))
			}
			n := start + int64(i)
			if n%997 == 0 || n == cp.tree.N-1 {
				p, err := tlog.ProveRecord(cp.tree.N, n, thr)
				if err != nil {
					return "", fmt.Errorf("entry %d: %v", n, err)
				}
				if err := tlog.CheckRecord(p, cp.tree.N, cp.tree.Hash, n, tlog.RecordHash(e)); err != nil {
					return "", fmt.Errorf("entry %d: %v", n, err)
				}
			}
		}
	}
	// Every historical checkpoint must be an earlier head of this tree.
	hist := 0
	if f, err := os.Open(filepath.Join(dir, "checkpoints.jsonl")); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var line struct {
				Size int64  `json:"size"`
				Note string `json:"note"`
			}
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				return "", fmt.Errorf("history line %d: %v", hist+1, err)
			}
			old, err := openCheckpoint(vkey, []byte(line.Note))
			if err != nil {
				return "", fmt.Errorf("history line %d: %v", hist+1, err)
			}
			hist++
			if old.tree.N == 0 {
				// The empty tree is a prefix of every tree; x/mod has no proof
				// for it. RFC 6962: its root is SHA-256 of the empty string.
				if old.tree.Hash != tlog.Hash(sha256.Sum256(nil)) {
					return "", fmt.Errorf("history line %d: bad empty root", hist)
				}
				continue
			}
			p, err := tlog.ProveTree(cp.tree.N, old.tree.N, thr)
			if err != nil {
				return "", fmt.Errorf("history line %d: %v", hist, err)
			}
			if err := tlog.CheckTree(p, cp.tree.N, cp.tree.Hash, old.tree.N, old.tree.Hash); err != nil {
				return "", fmt.Errorf("history line %d: %v", hist, err)
			}
		}
	}
	return fmt.Sprintf("OK tiles: all %d entries and hash tiles match %s; %d historical checkpoints consistent",
		cp.tree.N, cp.origin, hist), nil
}

func run(args []string) (string, error) {
	if len(args) != 3 {
		return "", errors.New("usage: tlogverify checkpoint|inclusion|consistency|tiles VKEY PATH")
	}
	mode, vkey, path := args[0], args[1], args[2]
	switch mode {
	case "checkpoint":
		msg, err := os.ReadFile(path)
		if err != nil {
			return "", err
		}
		cp, err := openCheckpoint(vkey, msg)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("OK checkpoint: origin=%s size=%d root=%s", cp.origin, cp.tree.N, cp.tree.Hash), nil
	case "inclusion":
		var p struct {
			Checkpoint string   `json:"checkpoint"`
			Index      int64    `json:"index"`
			Entry      string   `json:"entry"`
			Hashes     []string `json:"hashes"`
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return "", err
		}
		if err := json.Unmarshal(b, &p); err != nil {
			return "", err
		}
		cp, err := openCheckpoint(vkey, []byte(p.Checkpoint))
		if err != nil {
			return "", err
		}
		hs, err := hashes(p.Hashes)
		if err != nil {
			return "", err
		}
		if err := tlog.CheckRecord(hs, cp.tree.N, cp.tree.Hash, p.Index, tlog.RecordHash([]byte(p.Entry))); err != nil {
			return "", err
		}
		return fmt.Sprintf("OK inclusion: entry %d in tree of size %d", p.Index, cp.tree.N), nil
	case "consistency":
		var p struct {
			Old    string   `json:"old_checkpoint"`
			New    string   `json:"new_checkpoint"`
			Hashes []string `json:"hashes"`
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return "", err
		}
		if err := json.Unmarshal(b, &p); err != nil {
			return "", err
		}
		old, err := openCheckpoint(vkey, []byte(p.Old))
		if err != nil {
			return "", err
		}
		cur, err := openCheckpoint(vkey, []byte(p.New))
		if err != nil {
			return "", err
		}
		hs, err := hashes(p.Hashes)
		if err != nil {
			return "", err
		}
		if err := tlog.CheckTree(hs, cur.tree.N, cur.tree.Hash, old.tree.N, old.tree.Hash); err != nil {
			return "", err
		}
		return fmt.Sprintf("OK consistency: tree %d is an extension of tree %d", cur.tree.N, old.tree.N), nil
	case "tiles":
		return checkTiles(vkey, path)
	}
	return "", fmt.Errorf("unknown mode %q", mode)
}

func main() {
	out, err := run(os.Args[1:])
	if err != nil {
		fmt.Println("FAIL:", err)
		os.Exit(1)
	}
	fmt.Println(out)
}
