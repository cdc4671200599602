package authority

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nym-go/nym/internal/keyfile"
	"github.com/nym-go/nym/mixnet/ticket"
	bolt "go.etcd.io/bbolt"
)

// VouchersFile is the name, in the data dir, of the vouchers this authority
// accepts: one code per line, mode 0600 (the codes are as good as money).
// Like the approvals file it is apart from the state database so that
// `nym-api vouchers create|add` works while the authority runs; the
// authority rereads it when it changes. Whether a voucher was used is in
// the database.
const VouchersFile = "vouchers.txt"

// maxVouchersSize bounds the vouchers file (about 50 bytes a voucher).
const maxVouchersSize = 32 << 20

// LoadVouchers reads the vouchers of dataDir; a missing file is none.
func LoadVouchers(dataDir string) ([]ticket.Voucher, error) {
	path := filepath.Join(dataDir, VouchersFile)
	data, err := keyfile.ReadLimit(path, maxVouchersSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("vouchers: %w", err)
	}
	var out []ticket.Voucher
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		v, err := ticket.ParseVoucher(line)
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, n, err)
		}
		out = append(out, v)
	}
	return out, sc.Err()
}

// AddVouchers adds vouchers to dataDir's file (those it holds already are
// skipped) and returns how many were new. Run it at every authority with
// the same codes: a voucher is redeemable where it is installed.
func AddVouchers(dataDir string, vs []ticket.Voucher) (int, error) {
	have, err := LoadVouchers(dataDir)
	if err != nil {
		return 0, err
	}
	seen := make(map[ticket.Voucher]bool, len(have)+len(vs))
	var buf bytes.Buffer
	buf.WriteString("# Vouchers this authority redeems (nym-api vouchers); one code per line. Keep it secret.\n")
	for _, v := range have {
		seen[v] = true
		fmt.Fprintln(&buf, v)
	}
	added := 0
	for _, v := range vs {
		if !seen[v] {
			seen[v] = true
			fmt.Fprintln(&buf, v)
			added++
		}
	}
	if buf.Len() > maxVouchersSize {
		return 0, fmt.Errorf("vouchers: the file would exceed %d bytes", maxVouchersSize)
	}
	if err := os.MkdirAll(dataDir, keyfile.DirMode); err != nil {
		return 0, err
	}
	err = keyfile.Replace(filepath.Join(dataDir, VouchersFile), func(f *os.File) error {
		_, err := f.Write(buf.Bytes())
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("vouchers: %w", err)
	}
	return added, nil
}

// voucherID is what the database keys a voucher's use by: a hash of its
// code, so the database does not hold spendable codes.
func voucherID(v ticket.Voucher) [32]byte {
	return sha256.Sum256([]byte("nym-go/authority/voucher/v1\x00" + v.String()))
}

// voucherSet is the running authority's view of the vouchers file, reread
// when the file changes (its size or modification time).
type voucherSet struct {
	dataDir string

	mu    sync.Mutex
	stamp [2]int64
	known map[ticket.Voucher]bool
}

// has reports whether v is installed, rereading the file if it changed.
func (vs *voucherSet) has(v ticket.Voucher) (bool, error) {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	fi, err := os.Stat(filepath.Join(vs.dataDir, VouchersFile))
	var stamp [2]int64
	if err == nil {
		stamp = [2]int64{fi.Size(), fi.ModTime().UnixNano()}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	if vs.known == nil || stamp != vs.stamp {
		list, err := LoadVouchers(vs.dataDir)
		if err != nil {
			return false, err
		}
		vs.known = make(map[ticket.Voucher]bool, len(list))
		for _, x := range list {
			vs.known[x] = true
		}
		vs.stamp = stamp
	}
	return vs.known[v], nil
}

// VouchersUsed reports, for each voucher, whether it was redeemed at the
// authority of dataDir. It reads the state database, which a running
// authority holds locked: then it fails, saying so.
func VouchersUsed(dataDir string, vs []ticket.Voucher) ([]bool, error) {
	path := filepath.Join(dataDir, DatabaseFile)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return make([]bool, len(vs)), nil // never ran: nothing used
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 500 * time.Millisecond})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("%s is locked: the authority is running (stop it to see which vouchers were used)", path)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	out := make([]bool, len(vs))
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketVoucherUse)
		if b == nil {
			return nil
		}
		for i, v := range vs {
			id := voucherID(v)
			out[i] = b.Get(id[:]) != nil
		}
		return nil
	})
	return out, err
}
