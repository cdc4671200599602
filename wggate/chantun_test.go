package wggate

import (
	"testing"
)

func chanPkt(b byte) *[]byte {
	bp := bufPool.Get().(*[]byte)
	*bp = append((*bp)[:0], b)
	return bp
}

// TestChanTUNBatches: batches come out in order across reads shorter and
// longer than a batch, and the queue refuses past its packet limit.
func TestChanTUNBatches(t *testing.T) {
	ct := newChanTUN(1420, 5, nil)
	defer ct.Close()
	if ct.InjectBatch(nil) {
		t.Fatal("an empty batch was taken")
	}
	if !ct.InjectBatch([]*[]byte{chanPkt(1), chanPkt(2), chanPkt(3)}) || !ct.Inject(chanPkt(4)) {
		t.Fatal("refused within the limit")
	}
	if ct.InjectBatch([]*[]byte{chanPkt(5), chanPkt(6)}) {
		t.Fatal("took 6 packets with a limit of 5")
	}
	if !ct.Inject(chanPkt(5)) {
		t.Fatal("refused the 5th packet")
	}
	bufs, sizes := make([][]byte, 2), make([]int, 2)
	for i := range bufs {
		bufs[i] = make([]byte, 64)
	}
	var got []byte
	for len(got) < 5 {
		n, err := ct.Read(bufs, sizes, 16)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if sizes[i] != 1 {
				t.Fatalf("size %d", sizes[i])
			}
			got = append(got, bufs[i][16])
		}
	}
	if string(got) != "\x01\x02\x03\x04\x05" {
		t.Fatalf("read %v", got)
	}
	if q := ct.queued.Load(); q != 0 {
		t.Fatalf("%d packets still counted", q)
	}
	if !ct.InjectBatch([]*[]byte{chanPkt(1), chanPkt(2), chanPkt(3), chanPkt(4), chanPkt(5)}) {
		t.Fatal("refused a full queue's worth after draining")
	}
}
