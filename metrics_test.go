package engine

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rpe-project/engine/release"
)

// TestMetricsDuringDownload scrapes /metrics and /status of a node while it
// downloads a release, and again once it has installed it.
func TestMetricsDuringDownload(t *testing.T) {
	boot := testNet(t)
	key := testKey(t)
	artifact, _ := testArtifact(t, 2<<20)
	cfg := testConfig(t, release.PublicKeyOf(key), boot, "1.0.0")
	cfg.MetricsAddr = "127.0.0.1:0"
	cfg.DownloadRate = 1 << 20 // about two seconds of download to scrape in
	testPublish(t, key, boot, artifact, "1.1.0", nil)
	e := startEngine(t, cfg)
	addr := e.Status().MetricsAddr
	if addr == "" {
		t.Fatal("Status.MetricsAddr is empty")
	}
	log := collect(e)
	log.wait(t, 30*time.Second, "Progress", func(ev Event) bool { p, ok := ev.(Progress); return ok && p.Verified > 0 })
	during := scrape(t, "http://"+addr+"/metrics")
	for _, want := range []string{"rpe_downloaded_bytes_total{", "rpe_peers{", "rpe_releases_seen_total{app=\"app\",channel=\"stable\"} 1", "rpe_installs_total{app=\"app\",channel=\"stable\"} 0"} {
		if !strings.Contains(during, want) {
			t.Errorf("/metrics during the download lacks %q:\n%s", want, during)
		}
	}
	if strings.Contains(during, "rpe_downloaded_bytes_total{app=\"app\",channel=\"stable\"} 0\n") {
		t.Errorf("no bytes downloaded after a verified chunk:\n%s", during)
	}
	var st Status
	if err := json.Unmarshal([]byte(scrape(t, "http://"+addr+"/status")), &st); err != nil {
		t.Fatalf("/status: %v", err)
	}
	if st.App != "app" || st.Latest != "1.1.0" {
		t.Errorf("/status: app %q latest %q", st.App, st.Latest)
	}
	log.wait(t, 60*time.Second, "Installed", isInstalled)
	after := scrape(t, "http://"+addr+"/metrics")
	if !strings.Contains(after, "rpe_installs_total{app=\"app\",channel=\"stable\"} 1") {
		t.Errorf("/metrics after the install:\n%s", after)
	}
	if strings.Contains(after, "go_goroutines") {
		t.Error("the engine's registry carries the global collectors")
	}
	e.Stop(t.Context())
	if _, err := http.Get("http://" + addr + "/metrics"); err == nil {
		t.Error("metrics still served after Stop")
	}
}

// TestNoMetricsByDefault: nothing listens unless asked.
func TestNoMetricsByDefault(t *testing.T) {
	boot := testNet(t)
	e := startEngine(t, testConfig(t, release.PublicKeyOf(testKey(t)), boot, "1.0.0"))
	if a := e.Status().MetricsAddr; a != "" {
		t.Fatalf("metrics served at %s without Config.MetricsAddr", a)
	}
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatal(fmt.Sprint(url, resp.Status, err))
	}
	return string(b)
}
