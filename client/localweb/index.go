package localweb

import (
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/sanping/sanping/server/dcm"
)

// entry is one instance the station keeps: where its file is and what the series list needs.
type entry struct {
	path                           string
	size                           int64
	mod                            time.Time
	study, series, sop             string
	modality, seriesDescription    string
	seriesNumber, instanceNumber   int
	hasSeriesNumber, hasInstNumber bool
}

// index maps SOP Instance UIDs to the station's files, and studies to their series.
type index struct {
	mu      sync.RWMutex
	bySOP   map[string]*entry
	byStudy map[string]map[string]map[string]*entry // study -> series -> sop
}

func newIndex() *index {
	return &index{bySOP: map[string]*entry{}, byStudy: map[string]map[string]map[string]*entry{}}
}

// read parses the file at path (values only: Pixel Data stays on disk) into an entry.
func read(path string) (*entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	in, err := dcm.Parse(f, fi.Size())
	if err != nil {
		return nil, err
	}
	e := &entry{path: path, size: fi.Size(), mod: fi.ModTime(), study: in.StudyInstanceUID, series: in.SeriesInstanceUID,
		sop: in.SOPInstanceUID, modality: in.String(tag.Modality), seriesDescription: in.String(tag.SeriesDescription)}
	e.seriesNumber, e.hasSeriesNumber = in.Int(tag.SeriesNumber)
	e.instanceNumber, e.hasInstNumber = in.Int(tag.InstanceNumber)
	return e, nil
}

// add indexes the file at path; a file that is not DICOM is left out.
func (x *index) add(path string) (*entry, error) {
	e, err := read(path)
	if err != nil {
		return nil, err
	}
	x.put(e)
	return e, nil
}

func (x *index) put(e *entry) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if old := x.bySOP[e.sop]; old != nil {
		x.dropLocked(old)
	}
	x.bySOP[e.sop] = e
	series := x.byStudy[e.study]
	if series == nil {
		series = map[string]map[string]*entry{}
		x.byStudy[e.study] = series
	}
	if series[e.series] == nil {
		series[e.series] = map[string]*entry{}
	}
	series[e.series][e.sop] = e
}

// drop forgets e (its file is gone), unless the SOP Instance has been indexed anew since.
func (x *index) drop(e *entry) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.bySOP[e.sop] == e {
		x.dropLocked(e)
	}
}

func (x *index) dropLocked(e *entry) {
	delete(x.bySOP, e.sop)
	if series := x.byStudy[e.study]; series != nil {
		delete(series[e.series], e.sop)
		if len(series[e.series]) == 0 {
			delete(series, e.series)
		}
		if len(series) == 0 {
			delete(x.byStudy, e.study)
		}
	}
}

// scan indexes every DICOM file under root, leaving out .failed folders (what the server
// refused is not the study the county has).
func (x *index) scan(root string) {
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() {
			if p != root && d.Name() == ".failed" {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || strings.HasSuffix(d.Name(), ".reason") || strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		x.add(p)
		return nil
	})
}

// seriesOf returns a study's series, each its instances sorted by Instance Number then UID;
// nil when the station has none of the study.
func (x *index) seriesOf(study string) map[string][]*entry {
	x.mu.RLock()
	defer x.mu.RUnlock()
	series := x.byStudy[study]
	if len(series) == 0 {
		return nil
	}
	out := make(map[string][]*entry, len(series))
	for uid, sops := range series {
		list := make([]*entry, 0, len(sops))
		for _, e := range sops {
			list = append(list, e)
		}
		sort.Slice(list, func(i, j int) bool {
			if list[i].instanceNumber != list[j].instanceNumber {
				return list[i].instanceNumber < list[j].instanceNumber
			}
			return list[i].sop < list[j].sop
		})
		out[uid] = list
	}
	return out
}

// instance returns the entry of one instance of a study and series.
func (x *index) instance(study, series, sop string) *entry {
	x.mu.RLock()
	defer x.mu.RUnlock()
	e := x.bySOP[sop]
	if e == nil || e.study != study || e.series != series {
		return nil
	}
	return e
}

func (x *index) count() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.bySOP)
}
