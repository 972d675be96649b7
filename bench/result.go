package main

import (
	"fmt"
	"strconv"
	"strings"
)

// resultLine is one machine-readable line of the run's outcome:
//
//	RESULT scenario=<name> key=value ...
//
// one per scenario, printed at the end, so that runs can be compared
// without parsing the prose. Ratios and milliseconds have three decimals,
// microseconds and MiB one; counts are integers.
type resultLine struct {
	b strings.Builder
}

func newResult(scenario string) *resultLine {
	l := &resultLine{}
	l.b.WriteString("RESULT scenario=" + scenario)
	return l
}

func (l *resultLine) f3(key string, v float64) *resultLine {
	return l.kv(key, strconv.FormatFloat(v, 'f', 3, 64))
}
func (l *resultLine) f1(key string, v float64) *resultLine {
	return l.kv(key, strconv.FormatFloat(v, 'f', 1, 64))
}
func (l *resultLine) f0(key string, v float64) *resultLine {
	return l.kv(key, strconv.FormatFloat(v, 'f', 0, 64))
}
func (l *resultLine) i(key string, v int) *resultLine { return l.kv(key, strconv.Itoa(v)) }

func (l *resultLine) kv(key, v string) *resultLine {
	l.b.WriteString(" " + key + "=" + v)
	return l
}

func (l *resultLine) String() string { return l.b.String() }

// resultLines are the RESULT lines of every scenario that ran.
func resultLines(o options, results []scenarioResult, lr loginResult, storms []stormResult, large1 *largeOneResult, users *usersResult) []string {
	var out []string
	for _, r := range results {
		l := newResult(r.key).
			f3("authgate_plain", r.authPlain.throughput).
			f3("authgate_same", r.authSame.throughput).
			f3("same_plain", r.samePlain.throughput)
		if r.authPlain.cpu > 0 {
			l.f3("authgate_plain_cpu", r.authPlain.cpu).f1("cpu_added_us", r.authSame.cpuAdded)
		}
		if r.hasProbe {
			l.f3("p99_added_ms", r.probeP99).f3("p99_own_ms", r.probeOwnP99)
		}
		l.f3("p99_added_load_ms", r.addedP99).i("provider_calls", r.providerCalls)
		out = append(out, l.String())
	}
	if o.scenarios["logins"] && len(lr.lat) > 0 {
		r := round{requests: len(lr.lat), elapsed: lr.elapsed, lat: lr.lat}
		out = append(out, newResult("logins").f1("logins_per_s", r.rps()).f3("p50_ms", p50(r)).f3("p99_ms", p99(r)).
			i("failed", lr.errors).f3("provider_per_login", float64(lr.provider)/float64(max(1, len(lr.lat)+lr.errors))).String())
	}
	for _, r := range storms {
		l := newResult(r.spec.name).i("sessions", r.n).i("connections", r.concurrency).i("turn", r.turn)
		if r.setupErr != "" {
			out = append(out, l.kv("setup_failed", "1").String())
			continue
		}
		l.i("refreshes", r.refreshes).i("failed", r.failed).i("lost", r.lost)
		if !r.spec.redis {
			l.i("stale", r.stale)
		}
		l.f3("storm_seconds", r.stormSeconds).f0("storm_rps", r.stormRPS).i("late", r.late).
			f0("provider_rps", r.limit.rps).f3("ratio", r.ratio()).
			f3("p50_before_ms", p50(r.before)).f3("p99_before_ms", p99(r.before)).
			f3("p50_during_ms", p50(r.during)).f3("p99_during_ms", p99(r.during)).f3("max_during_ms", ms(r.maxDuring)).
			f3("provider_p99_ms", p99(r.limit.lat)).f3("setup_seconds", r.setup.Seconds())
		out = append(out, l.String())
	}
	if r := large1; r != nil {
		l := newResult("large-1conn").i("sessions", r.n)
		if r.setupErr != "" {
			l.kv("setup_failed", "1")
		} else {
			l.f3("p99_added_hit_ms", r.hit.addedP99).f3("p99_own_hit_ms", r.hit.ownP99).
				f3("p99_added_miss_ms", r.miss.addedP99).f3("p99_own_miss_ms", r.miss.ownP99).
				f3("p50_added_hit_ms", r.hit.addedP50).f3("p50_added_miss_ms", r.miss.addedP50).
				f1("cpu_hit_us", r.cpuHit).f1("cpu_miss_us", r.cpuMiss).
				i("failed", r.errors).i("provider_calls", r.providerCalls).f3("setup_seconds", r.setup.Seconds())
		}
		out = append(out, l.String())
	}
	if r := users; r != nil {
		l := newResult("many-users").i("sessions", r.n)
		if r.setupErr != "" {
			l.kv("setup_failed", "1")
		} else {
			l.f3("authgate_same", r.miss.authSame.throughput).f3("authgate_plain", r.miss.authPlain.throughput).
				f3("miss_hit_rate", r.sweepHitRate)
			if r.miss.authSame.cpu > 0 {
				l.f1("cpu_added_us", r.miss.authSame.cpuAdded)
			}
			l.f1("rss_before_mb", r.rssBefore).f1("rss_after_mb", r.rssAfter).
				f3("hit_rate", r.hitRateModel).f3("hit_rate_cpu", r.hitRateCPU).f3("zipf_s", r.zipf).
				f1("cpu_miss_us", r.cpuMiss).f1("cpu_hit_us", r.cpuHit).f1("cpu_mix_us", r.cpuMix).
				i("failed", r.mixErrors).i("provider_calls", r.providerCalls).f3("setup_seconds", r.setup.Seconds())
		}
		out = append(out, l.String())
	}
	return out
}

// printNewSummary adds the storms, the large session on one connection
// and the many users to the summary.
func printNewSummary(storms []stormResult, large1 *largeOneResult, users *usersResult) {
	verdict := func(ok bool) string {
		if ok {
			return "ok"
		}
		return "MISSED"
	}
	for _, r := range storms {
		if r.setupErr != "" {
			fmt.Printf("  %-40s setup failed: %s\n", r.spec.name, r.setupErr)
			continue
		}
		correct := len(r.correct()) == 0
		fmt.Printf("  %-40s %d refreshes for %d sessions, %d failed, %d lost [one each, 0, 0] %s; %.0f refreshes/s, %.3f× the provider alone [≥ 0.80] %s;\n",
			r.spec.name, r.refreshes, r.n, r.failed, r.lost, verdict(correct), r.stormRPS, r.ratio(), verdict(r.ratio() >= 0.8))
		fmt.Printf("  %-40s all refreshed in %.3fs; p99 %.3f → %.3f ms during; longest %.2f ms [≤ %.2f] %s\n", "",
			r.stormSeconds, p99(r.before), p99(r.during), ms(r.maxDuring), r.waitLimit(), verdict(ms(r.maxDuring) <= r.waitLimit()))
	}
	if r := large1; r != nil && r.setupErr == "" {
		fmt.Printf("  %-40s added p99 on one connection: hit %+.3f ms [≤ %.1f] %s, miss %+.3f ms [≤ %.1f] %s (vs same bytes %+.3f, %+.3f)\n",
			"large-1conn", r.hit.addedP99, targetAddedP99, verdict(r.hit.addedP99 <= targetAddedP99),
			r.miss.addedP99, targetAddedP99, verdict(r.miss.addedP99 <= targetAddedP99), r.hit.ownP99, r.miss.ownP99)
	}
	if r := users; r != nil && r.setupErr == "" {
		fmt.Printf("  %-40s every request a miss (model: %.1f %% hits): authgate/same-bytes %.3f× [≥ 0.90] %s, CPU %+.1f µs per request; RSS %.1f → %.1f MiB [+ ≤ %d] %s\n",
			"many-users", 100*r.sweepHitRate, r.miss.authSame.throughput, verdict(r.miss.authSame.throughput >= 0.9), r.miss.authSame.cpuAdded,
			r.rssBefore, r.rssAfter, authgateCacheBudget>>20, verdict(r.rssAfter-r.rssBefore <= authgateCacheBudget>>20))
		fmt.Printf("  %-40s Zipf mix (s=%.2f): hit rate ≈ %.1f %% (model), %.1f %% (by CPU)\n", "", r.zipf, 100*r.hitRateModel, 100*r.hitRateCPU)
	}
}
