// Command porcupine-bench times Porcupine (the Go linearizability checker) on
// the peer histories, so bench/bench_linear.py can put our checker beside it
// in the same run on the same machine.
//
// Usage: porcupine-bench -peers ../shared/peers/porcupine -repeat 5 FILE...
// FILE is relative to -peers: jepsen/etcd_NNN.log (cas register, read as
// events) or kv/cNN-{ok,bad}.txt (key-value, partitioned by key). For each
// file it prints one JSON line: {"file", "linearizable", "median_s", "runs"}.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// ---- etcd: one register, read / write / cas ------------------------------------

type regIn struct {
	kind     int // 0 read, 1 write, 2 cas
	from, to int
}

type regOut struct {
	casOK   bool
	present bool
	value   int
	unknown bool
}

const absent = -1 << 40

var registerModel = porcupine.Model{
	Init: func() interface{} { return absent },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		s := state.(int)
		in := input.(regIn)
		out := output.(regOut)
		switch in.kind {
		case 0:
			if out.unknown {
				return true, s
			}
			if !out.present {
				return s == absent, s
			}
			return s == out.value, s
		case 1:
			return true, in.from
		default:
			next := s
			if s == in.from {
				next = in.to
			}
			if out.unknown {
				return true, next
			}
			return out.casOK == (s == in.from), next
		}
	},
}

var logLine = regexp.MustCompile(`^\S+\s+jepsen\.util\s+-\s+(\d+)\s+:(invoke|ok|fail|info)\s+:(\w+)\s*(.*)$`)
var pairVal = regexp.MustCompile(`^\[(-?\d+)\s+(-?\d+)\]$`)

func readEtcd(path string) ([]porcupine.Event, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var events []porcupine.Event
	open := map[int]int{} // process -> op id
	next := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := logLine.FindStringSubmatch(strings.TrimRight(sc.Text(), " \t"))
		if m == nil {
			continue
		}
		proc, _ := strconv.Atoi(m[1])
		typ, fn, val := m[2], m[3], m[4]
		if typ == "invoke" {
			in := regIn{}
			switch fn {
			case "read":
				in.kind = 0
			case "write":
				in.kind = 1
				in.from, _ = strconv.Atoi(val)
			case "cas":
				in.kind = 2
				p := pairVal.FindStringSubmatch(val)
				if p == nil {
					return nil, fmt.Errorf("%s: bad cas value %q", path, val)
				}
				in.from, _ = strconv.Atoi(p[1])
				in.to, _ = strconv.Atoi(p[2])
			}
			events = append(events, porcupine.Event{ClientId: proc, Kind: porcupine.CallEvent, Value: in, Id: next})
			open[proc] = next
			next++
			continue
		}
		id, ok := open[proc]
		if !ok {
			continue
		}
		if typ == "info" {
			continue // indeterminate: returns at the end of the history
		}
		out := regOut{}
		switch {
		case typ == "fail" && fn == "read":
			out.unknown = true // timed-out read
		case fn == "read":
			if val != "nil" {
				out.present = true
				out.value, _ = strconv.Atoi(val)
			}
		case fn == "cas":
			out.casOK = typ == "ok"
		}
		delete(open, proc)
		events = append(events, porcupine.Event{ClientId: proc, Kind: porcupine.ReturnEvent, Value: out, Id: id})
	}
	ids := make([]int, 0, len(open))
	procOf := map[int]int{}
	for p, id := range open {
		ids = append(ids, id)
		procOf[id] = p
	}
	sort.Ints(ids)
	for _, id := range ids {
		events = append(events, porcupine.Event{ClientId: procOf[id], Kind: porcupine.ReturnEvent, Value: regOut{unknown: true}, Id: id})
	}
	return events, sc.Err()
}

// ---- kv: get / put / append per key, partitioned ------------------------------------

type kvIn struct {
	kind       int // 0 get, 1 put, 2 append
	key, value string
}

var kvModel = porcupine.Model{
	PartitionEvent: func(history []porcupine.Event) [][]porcupine.Event {
		byKey := map[string][]porcupine.Event{}
		keyOf := map[int]string{}
		var order []string
		for _, e := range history {
			var k string
			if e.Kind == porcupine.CallEvent {
				k = e.Value.(kvIn).key
				keyOf[e.Id] = k
			} else {
				k = keyOf[e.Id]
			}
			if _, seen := byKey[k]; !seen {
				order = append(order, k)
			}
			byKey[k] = append(byKey[k], e)
		}
		out := make([][]porcupine.Event, 0, len(order))
		for _, k := range order {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() interface{} { return "" },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		s := state.(string)
		in := input.(kvIn)
		switch in.kind {
		case 0:
			return output.(string) == s, s
		case 1:
			return true, in.value
		default:
			return true, s + in.value
		}
	},
	Hash: func(state interface{}) uint64 {
		h := fnv.New64a()
		h.Write([]byte(state.(string)))
		return h.Sum64()
	},
}

var kvLine = regexp.MustCompile(`^\{:process (\d+), :type :(\w+), :f :(\w+), :key "([^"]*)", :value (nil|"[^"]*")\}$`)

func readKv(path string) ([]porcupine.Event, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var events []porcupine.Event
	open := map[int]int{}
	next := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := kvLine.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		proc, _ := strconv.Atoi(m[1])
		val := strings.Trim(m[5], `"`)
		if m[5] == "nil" {
			val = ""
		}
		if m[2] == "invoke" {
			in := kvIn{key: m[4], value: val}
			switch m[3] {
			case "get":
				in.kind = 0
			case "put":
				in.kind = 1
			default:
				in.kind = 2
			}
			events = append(events, porcupine.Event{ClientId: proc, Kind: porcupine.CallEvent, Value: in, Id: next})
			open[proc] = next
			next++
		} else if id, ok := open[proc]; ok {
			delete(open, proc)
			events = append(events, porcupine.Event{ClientId: proc, Kind: porcupine.ReturnEvent, Value: val, Id: id})
		}
	}
	for p, id := range open {
		events = append(events, porcupine.Event{ClientId: p, Kind: porcupine.ReturnEvent, Value: "", Id: id})
	}
	return events, sc.Err()
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func main() {
	peers := flag.String("peers", "../shared/peers/porcupine", "directory holding jepsen/ and kv/")
	repeat := flag.Int("repeat", 5, "runs per file (the median is reported)")
	flag.Parse()
	enc := json.NewEncoder(os.Stdout)
	for _, name := range flag.Args() {
		path := filepath.Join(*peers, name)
		var events []porcupine.Event
		var err error
		model := registerModel
		if strings.HasPrefix(name, "kv/") {
			events, err = readKv(path)
			model = kvModel
		} else {
			events, err = readEtcd(path)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		var times []float64
		verdict := false
		for r := 0; r < *repeat; r++ {
			start := time.Now()
			verdict = porcupine.CheckEvents(model, events)
			times = append(times, time.Since(start).Seconds())
		}
		if err := enc.Encode(map[string]interface{}{
			"file": name, "linearizable": verdict, "median_s": median(times), "runs": *repeat,
		}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}
