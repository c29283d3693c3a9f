package consult

import (
	"bytes"
	"context"
	"database/sql"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"strconv"
	"sync"
	"time"
)

//go:embed print.html
var printHTML string

var printTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"beijing":   beijingTime,
	"sex":       sexLabel,
	"urgency":   urgencyLabel,
	"birthDate": birthDateLabel,
	"inc":       func(i int) int { return i + 1 },
}).Parse(printHTML))

// beijing is China Standard Time. Without tzdata on the host a fixed UTC+8 is the same zone:
// China has not used daylight saving time since 1991.
var beijing = sync.OnceValue(func() *time.Location {
	if loc, err := time.LoadLocation("Asia/Shanghai"); err == nil {
		return loc
	}
	return time.FixedZone("CST", 8*60*60)
})

func beijingTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.In(beijing()).Format("2006-01-02 15:04:05") + " (UTC+8)"
}

func sexLabel(sex string) string {
	switch sex {
	case "M":
		return "男 / Male"
	case "F":
		return "女 / Female"
	case "O":
		return "其他 / Other"
	}
	return ""
}

func urgencyLabel(u Urgency) string {
	switch u {
	case Routine:
		return "常规 / Routine"
	case Urgent:
		return "加急 / Urgent"
	case Emergency:
		return "紧急 / Emergency"
	}
	return string(u)
}

func birthDateLabel(d string) string {
	if len(d) != 8 {
		return d
	}
	return d[:4] + "-" + d[4:6] + "-" + d[6:]
}

type printPage struct {
	C                          *Consultation
	R                          *Report
	RequestingName, TargetName string
	HeldAt, PrintedAt          time.Time
}

// PrintHTML writes the report of consultation id as a self-contained HTML page meant to be
// printed (or printed to PDF) on A4. A draft carries a DRAFT banner and watermark.
func (s *Service) PrintHTML(ctx context.Context, w io.Writer, id int64) error {
	p := printPage{PrintedAt: s.clock()}
	err := s.read(ctx, func(tx *sql.Tx) error {
		var err error
		if p.C, err = get(ctx, tx, id); err != nil {
			return err
		}
		if p.R, err = loadReport(ctx, tx, id); err != nil {
			return err
		}
		if p.RequestingName, err = institutionName(ctx, tx, p.C.RequestingInstitutionID); err != nil {
			return err
		}
		p.TargetName, err = institutionName(ctx, tx, p.C.TargetInstitutionID)
		return err
	})
	if err != nil {
		return err
	}
	if p.RequestingName == "" {
		p.RequestingName = "#" + strconv.FormatInt(p.C.RequestingInstitutionID, 10)
	}
	if p.TargetName == "" {
		p.TargetName = "#" + strconv.FormatInt(p.C.TargetInstitutionID, 10)
	}
	p.HeldAt = p.C.ScheduledAt
	if len(p.C.Sessions) > 0 {
		p.HeldAt = p.C.Sessions[0].Start
	}
	// Rendered whole first, so an error never leaves half a page behind.
	var buf bytes.Buffer
	if err := printTemplate.Execute(&buf, p); err != nil {
		return fmt.Errorf("consult: printing report %d: %w", id, err)
	}
	_, err = w.Write(buf.Bytes())
	return err
}
