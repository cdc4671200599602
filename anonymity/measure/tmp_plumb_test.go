package measure

import (
	"os"
	"testing"
	"time"

	"github.com/nym-go/nym/vpn"
)

func TestPlumb(t *testing.T) {
	row, err := Measure(t, Options{Profile: vpn.DefaultProfile(), Clients: 5, Duration: 20 * time.Second, Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	WriteTable(os.Stdout, []Row{row})
}
