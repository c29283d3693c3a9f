package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
)

// Level is a QIDO query level (PS3.18 10.6).
type Level int

const (
	StudyLevel Level = iota
	SeriesLevel
	InstanceLevel
)

// Query is a search: scope from the path, matching keys (keyword -> value as sent), paging.
type Query struct {
	Level     Level
	StudyUID  string
	SeriesUID string
	Match     map[string]string
	Fuzzy     bool
	Limit     int
	Offset    int
	// Scope, when not empty, is an SQL condition over studies aliased st that every result
	// must meet (the caller's authorization scope), with its arguments.
	Scope     string
	ScopeArgs []any
}

// Study is a study row joined with its patient.
type Study struct {
	PK                                                  int64
	StudyUID, PatientName, PatientID, Issuer, BirthDate string
	Sex, StudyDate, StudyTime, Accession, StudyID, Desc string
	Referring, Modalities                               string
	NumSeries, NumInstances                             int
}

// Series is a series row.
type Series struct {
	PK                                                int64
	SeriesUID, Modality, Desc, SeriesDate, SeriesTime string
	BodyPart, PPSDate, PPSTime                        string
	SeriesNumber                                      sql.NullInt64
	NumInstances                                      int
}

// Instance is an instance row: what readers need to serve it without parsing.
type Instance struct {
	PK                                 int64
	SOPUID, SeriesUID, SOPClass        string
	TransferSyntax                     string
	InstanceNumber, Rows, Cols, Frames sql.NullInt64
	BitsAllocated                      sql.NullInt64
	Path                               string
	Size                               int64
	SHA256                             string
}

// Row is one match: Study always, Series from series level, Instance at instance level.
type Row struct {
	Study    Study
	Series   *Series
	Instance *Instance
}

// matchColumn says how a matching key maps onto the index.
type matchColumn struct {
	level  Level
	column string
	kind   matchKind
}

type matchKind int

const (
	matchString     matchKind = iota // single value or wildcard, case-sensitive (PS3.4 C.2.2.2)
	matchText                        // single value or wildcard, ASCII case-insensitive (descriptions)
	matchPN                          // person name: any component group, case-insensitive
	matchUID                         // list of UIDs (backslash or comma separated)
	matchDate                        // date or range
	matchTime                        // time or range
	matchInt                         // integer
	matchModalities                  // any series of the study has one of the modalities
)

var matchColumns = map[string]matchColumn{
	"PatientName":                     {StudyLevel, "", matchPN},
	"PatientID":                       {StudyLevel, "pa.patient_id", matchString},
	"IssuerOfPatientID":               {StudyLevel, "pa.issuer", matchString},
	"PatientBirthDate":                {StudyLevel, "pa.birth_date", matchDate},
	"PatientSex":                      {StudyLevel, "pa.sex", matchString},
	"StudyInstanceUID":                {StudyLevel, "st.study_uid", matchUID},
	"StudyDate":                       {StudyLevel, "st.study_date", matchDate},
	"StudyTime":                       {StudyLevel, "st.study_time", matchTime},
	"AccessionNumber":                 {StudyLevel, "st.accession", matchString},
	"StudyID":                         {StudyLevel, "st.study_id", matchString},
	"StudyDescription":                {StudyLevel, "st.description", matchText},
	"ReferringPhysicianName":          {StudyLevel, "st.referring", matchText},
	"ModalitiesInStudy":               {StudyLevel, "", matchModalities},
	"SeriesInstanceUID":               {SeriesLevel, "se.series_uid", matchUID},
	"Modality":                        {SeriesLevel, "se.modality", matchString},
	"SeriesNumber":                    {SeriesLevel, "se.series_number", matchInt},
	"SeriesDescription":               {SeriesLevel, "se.description", matchText},
	"SeriesDate":                      {SeriesLevel, "se.series_date", matchDate},
	"SeriesTime":                      {SeriesLevel, "se.series_time", matchTime},
	"BodyPartExamined":                {SeriesLevel, "se.body_part", matchString},
	"PerformedProcedureStepStartDate": {SeriesLevel, "se.pps_start_date", matchDate},
	"PerformedProcedureStepStartTime": {SeriesLevel, "se.pps_start_time", matchTime},
	"SOPInstanceUID":                  {InstanceLevel, "i.sop_uid", matchUID},
	"SOPClassUID":                     {InstanceLevel, "i.sop_class", matchUID},
	"InstanceNumber":                  {InstanceLevel, "i.instance_number", matchInt},
}

// Matchable reports whether a keyword can be matched at a level.
func Matchable(keyword string, level Level) bool {
	m, ok := matchColumns[keyword]
	return ok && m.level <= level
}

// ErrBadQuery wraps a matching value the server cannot use (a malformed date range, say).
var ErrBadQuery = errors.New("bad query")

const (
	studyCols    = `st.pk, st.study_uid, st.patient_name, pa.patient_id, pa.issuer, pa.birth_date, pa.sex, st.study_date, st.study_time, st.accession, st.study_id, st.description, st.referring, st.modalities, st.num_series, st.num_instances`
	seriesCols   = `se.pk, se.series_uid, se.modality, se.description, se.series_date, se.series_time, se.body_part, se.pps_start_date, se.pps_start_time, se.series_number, se.num_instances`
	instanceCols = `i.pk, i.sop_uid, se.series_uid, i.sop_class, i.transfer_syntax, i.instance_number, i.rows, i.columns, i.frames, i.bits_allocated, i.path, i.size, i.sha256`
)

// Search runs a QIDO query. It returns up to q.Limit rows and whether more matched.
func (s *Store) Search(ctx context.Context, q Query) ([]Row, bool, error) {
	var sb strings.Builder
	var args []any
	sb.WriteString("SELECT ")
	sb.WriteString(studyCols)
	switch q.Level {
	case StudyLevel:
		sb.WriteString(" FROM studies st JOIN patients pa ON pa.pk = st.patient_pk")
	case SeriesLevel:
		sb.WriteString(", " + seriesCols + " FROM series se JOIN studies st ON st.pk = se.study_pk JOIN patients pa ON pa.pk = st.patient_pk")
	case InstanceLevel:
		sb.WriteString(", " + seriesCols + ", " + instanceCols + " FROM instances i JOIN series se ON se.pk = i.series_pk JOIN studies st ON st.pk = se.study_pk JOIN patients pa ON pa.pk = st.patient_pk")
	}
	sb.WriteString(" WHERE 1=1")
	if q.StudyUID != "" {
		sb.WriteString(" AND st.study_uid = ?")
		args = append(args, q.StudyUID)
	}
	if q.SeriesUID != "" {
		sb.WriteString(" AND se.series_uid = ?")
		args = append(args, q.SeriesUID)
	}
	if q.Scope != "" {
		sb.WriteString(" AND (" + q.Scope + ")")
		args = append(args, q.ScopeArgs...)
	}
	for kw, val := range q.Match {
		m, ok := matchColumns[kw]
		if !ok || m.level > q.Level || val == "" || val == "*" {
			continue // universal matching
		}
		cond, a, err := condition(m, val, q.Fuzzy)
		if err != nil {
			return nil, false, fmt.Errorf("%w: %s=%q: %v", ErrBadQuery, kw, val, err)
		}
		sb.WriteString(" AND (" + cond + ")")
		args = append(args, a...)
	}
	switch q.Level {
	case StudyLevel:
		sb.WriteString(" ORDER BY st.study_date DESC, st.study_time DESC, st.pk")
	case SeriesLevel:
		sb.WriteString(" ORDER BY st.pk, se.series_number, se.pk")
	case InstanceLevel:
		sb.WriteString(" ORDER BY se.pk, i.instance_number, i.pk")
	}
	sb.WriteString(" LIMIT ? OFFSET ?")
	args = append(args, q.Limit+1, q.Offset)
	rows, err := s.db.QueryContext(ctx, sb.String(), args...)
	if err != nil {
		return nil, false, fmt.Errorf("searching index: %w", err)
	}
	defer rows.Close()
	var out []Row
	for rows.Next() {
		var r Row
		st := &r.Study
		dest := []any{&st.PK, &st.StudyUID, &st.PatientName, &st.PatientID, &st.Issuer, &st.BirthDate, &st.Sex,
			&st.StudyDate, &st.StudyTime, &st.Accession, &st.StudyID, &st.Desc, &st.Referring, &st.Modalities,
			&st.NumSeries, &st.NumInstances}
		if q.Level >= SeriesLevel {
			r.Series = &Series{}
			se := r.Series
			dest = append(dest, &se.PK, &se.SeriesUID, &se.Modality, &se.Desc, &se.SeriesDate, &se.SeriesTime,
				&se.BodyPart, &se.PPSDate, &se.PPSTime, &se.SeriesNumber, &se.NumInstances)
		}
		if q.Level == InstanceLevel {
			r.Instance = &Instance{}
			dest = append(dest, r.Instance.scanDest()...)
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, false, fmt.Errorf("reading search results: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("reading search results: %w", err)
	}
	more := len(out) > q.Limit
	if more {
		out = out[:q.Limit]
	}
	return out, more, nil
}

func (in *Instance) scanDest() []any {
	return []any{&in.PK, &in.SOPUID, &in.SeriesUID, &in.SOPClass, &in.TransferSyntax, &in.InstanceNumber, &in.Rows, &in.Cols,
		&in.Frames, &in.BitsAllocated, &in.Path, &in.Size, &in.SHA256}
}

func condition(m matchColumn, val string, fuzzy bool) (string, []any, error) {
	switch m.kind {
	case matchPN:
		pat := strings.ToLower(val)
		if fuzzy && !strings.ContainsAny(pat, "*?") {
			pat += "*"
		}
		g := globPattern(pat)
		return "st.name_a GLOB ? OR st.name_i GLOB ? OR st.name_p GLOB ? OR st.patient_name GLOB ?", []any{g, g, g, globPattern(val)}, nil
	case matchString:
		if strings.ContainsAny(val, "*?") {
			return m.column + " GLOB ?", []any{globPattern(val)}, nil
		}
		return m.column + " = ?", []any{val}, nil
	case matchText:
		if fuzzy && !strings.ContainsAny(val, "*?") {
			val = "*" + val + "*"
		}
		return "lower(" + m.column + ") GLOB ?", []any{globPattern(strings.ToLower(val))}, nil
	case matchUID:
		uids := strings.FieldsFunc(val, func(r rune) bool { return r == '\\' || r == ',' })
		if len(uids) == 0 {
			return "1=1", nil, nil
		}
		ph := strings.TrimSuffix(strings.Repeat("?,", len(uids)), ",")
		args := make([]any, len(uids))
		for i, u := range uids {
			args[i] = strings.TrimSpace(u)
		}
		return m.column + " IN (" + ph + ")", args, nil
	case matchModalities:
		mods := strings.FieldsFunc(val, func(r rune) bool { return r == '\\' || r == ',' })
		ph := strings.TrimSuffix(strings.Repeat("?,", len(mods)), ",")
		args := make([]any, len(mods))
		for i, v := range mods {
			args[i] = strings.TrimSpace(v)
		}
		return "EXISTS (SELECT 1 FROM series s2 WHERE s2.study_pk = st.pk AND s2.modality IN (" + ph + "))", args, nil
	case matchInt:
		n, err := strconv.ParseInt(strings.TrimSpace(val), 10, 64)
		if err != nil {
			return "", nil, fmt.Errorf("not an integer")
		}
		return m.column + " = ?", []any{n}, nil
	case matchDate, matchTime:
		return rangeCondition(m.column, val, m.kind == matchDate)
	}
	return "", nil, fmt.Errorf("unsupported match")
}

// rangeCondition handles "A", "A-B", "-B" and "A-" (PS3.4 C.2.2.2.5). Dates are compared as
// YYYYMMDD strings, times as HHMMSS.FFFFFF prefixes.
func rangeCondition(col, val string, date bool) (string, []any, error) {
	norm := func(s string) (string, error) {
		s = strings.TrimSpace(strings.ReplaceAll(s, ".", ""))
		if date {
			s = strings.ReplaceAll(s, "-", "")
			if len(s) != 8 || strings.Trim(s, "0123456789") != "" {
				return "", fmt.Errorf("dates are YYYYMMDD")
			}
			return s, nil
		}
		s = strings.ReplaceAll(s, ":", "")
		if s == "" || strings.Trim(s, "0123456789") != "" {
			return "", fmt.Errorf("times are HHMMSS")
		}
		return s, nil
	}
	lo, hi, isRange := strings.Cut(val, "-")
	if !isRange {
		v, err := norm(val)
		if err != nil {
			return "", nil, err
		}
		if date {
			return col + " = ?", []any{v}, nil
		}
		return col + " GLOB ?", []any{v + "*"}, nil
	}
	var conds []string
	var args []any
	if lo != "" {
		v, err := norm(lo)
		if err != nil {
			return "", nil, err
		}
		conds = append(conds, col+" >= ?")
		args = append(args, v)
	}
	if hi != "" {
		v, err := norm(hi)
		if err != nil {
			return "", nil, err
		}
		if !date {
			v += "\xff" // a time prefix includes everything within it
		}
		conds = append(conds, col+" <= ?")
		args = append(args, v)
	}
	if len(conds) == 0 {
		return "1=1", nil, nil
	}
	// Empty stored values never match a range.
	conds = append(conds, col+" != ''")
	return strings.Join(conds, " AND "), args, nil
}

// globPattern turns DICOM wildcards (* and ?) into a SQLite GLOB pattern, escaping GLOB's own
// specials.
func globPattern(v string) string {
	var b strings.Builder
	for _, r := range v {
		switch r {
		case '[':
			b.WriteString("[[]")
		case ']':
			b.WriteString("[]]")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// scopedInstances selects cols of the instances of a study, series or one instance, in
// series and instance number order.
func scopedInstances(cols, studyUID, seriesUID, sopUID string) (string, []any) {
	q := `SELECT ` + cols + ` FROM instances i JOIN series se ON se.pk = i.series_pk JOIN studies st ON st.pk = se.study_pk WHERE st.study_uid = ?`
	args := []any{studyUID}
	if seriesUID != "" {
		q += " AND se.series_uid = ?"
		args = append(args, seriesUID)
	}
	if sopUID != "" {
		q += " AND i.sop_uid = ?"
		args = append(args, sopUID)
	}
	return q + " ORDER BY se.series_number, se.pk, i.instance_number, i.pk", args
}

// Instances lists the instances of a study, series or single instance for retrieval.
// Empty seriesUID or sopUID widens the scope. ErrNotFound when nothing matches.
func (s *Store) Instances(ctx context.Context, studyUID, seriesUID, sopUID string) ([]Instance, error) {
	q, args := scopedInstances(instanceCols, studyUID, seriesUID, sopUID)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing instances: %w", err)
	}
	defer rows.Close()
	var out []Instance
	for rows.Next() {
		var in Instance
		if err := rows.Scan(in.scanDest()...); err != nil {
			return nil, fmt.Errorf("listing instances: %w", err)
		}
		out = append(out, in)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing instances: %w", err)
	}
	if len(out) == 0 {
		return nil, ErrNotFound
	}
	return out, nil
}

// WriteMetadata writes the DICOM JSON array of every instance in scope to w, straight from the
// metadata computed at ingest (no file is parsed). rewrite is applied to each object.
func (s *Store) WriteMetadata(ctx context.Context, w io.Writer, studyUID, seriesUID, sopUID string, rewrite func([]byte) []byte) error {
	q, args := scopedInstances("i.metadata", studyUID, seriesUID, sopUID)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("reading metadata: %w", err)
	}
	defer rows.Close()
	n := 0
	var buf []byte
	for rows.Next() {
		var raw sql.RawBytes
		if err := rows.Scan(&raw); err != nil {
			return fmt.Errorf("reading metadata: %w", err)
		}
		if n == 0 {
			buf = append(buf[:0], '[')
		} else {
			buf = append(buf[:0], ',')
		}
		buf = append(buf, rewrite(raw)...)
		if _, err := w.Write(buf); err != nil {
			return err
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading metadata: %w", err)
	}
	if n == 0 {
		return ErrNotFound
	}
	_, err = w.Write([]byte{']'})
	return err
}

// InstanceMetadata returns one instance's stored DICOM JSON object.
func (s *Store) InstanceMetadata(ctx context.Context, pk int64) ([]byte, error) {
	var b []byte
	err := s.db.QueryRowContext(ctx, `SELECT metadata FROM instances WHERE pk = ?`, pk).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return b, err
}

// FirstInstance returns the first instance of a study or series (for study- and series-level
// attributes the index does not hold, asked for by includefield).
func (s *Store) FirstInstance(ctx context.Context, studyPK, seriesPK int64) (int64, error) {
	var pk int64
	var err error
	if seriesPK != 0 {
		err = s.db.QueryRowContext(ctx, `SELECT pk FROM instances WHERE series_pk = ? ORDER BY instance_number, pk LIMIT 1`, seriesPK).Scan(&pk)
	} else {
		err = s.db.QueryRowContext(ctx, `SELECT i.pk FROM instances i JOIN series se ON se.pk = i.series_pk WHERE se.study_pk = ? ORDER BY se.series_number, se.pk, i.instance_number, i.pk LIMIT 1`, studyPK).Scan(&pk)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	return pk, err
}

// FirstImage is where a viewer opens a study: the first series (by Series Number) that has an
// instance with pixels, and its first instance (by Instance Number). Instances without rows
// (structured reports, key object selections) are passed over while the study has images;
// ErrNotFound when it has none at all.
func (s *Store) FirstImage(ctx context.Context, studyUID string) (seriesUID, sopUID string, err error) {
	err = s.db.QueryRowContext(ctx, `SELECT se.series_uid, i.sop_uid FROM instances i
		JOIN series se ON se.pk = i.series_pk JOIN studies st ON st.pk = se.study_pk
		WHERE st.study_uid = ?
		ORDER BY COALESCE(i.rows, 0) = 0, se.series_number IS NULL, se.series_number, se.pk, i.instance_number IS NULL, i.instance_number, i.pk
		LIMIT 1`, studyUID).Scan(&seriesUID, &sopUID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", ErrNotFound
	}
	if err != nil {
		return "", "", fmt.Errorf("finding the first image of study %s: %w", studyUID, err)
	}
	return seriesUID, sopUID, nil
}

// Layout returns how an instance's file is laid out.
func (s *Store) Layout(ctx context.Context, pk int64) (*StoredLayout, error) {
	var b []byte
	if err := s.db.QueryRowContext(ctx, `SELECT layout FROM instances WHERE pk = ?`, pk).Scan(&b); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("reading layout: %w", err)
	}
	var l StoredLayout
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("decoding layout: %w", err)
	}
	return &l, nil
}

// FilePath is the absolute path of an instance's stored file.
func (s *Store) FilePath(in *Instance) string { return s.dir + "/" + in.Path }

// StudyPatient returns the patient ID and name of a stored study, for the audit trail. The
// name is the first Person Name group written in Chinese characters, without its carets
// ("韦东平", as clinics write it on a consultation; county PACS put it in the alphabetic group
// as often as in the ideographic one), else the whole Person Name. ErrNotFound if the study
// is not stored.
func (s *Store) StudyPatient(ctx context.Context, studyUID string) (id, name string, err error) {
	var pn string
	err = s.db.QueryRowContext(ctx, `SELECT p.patient_id, st.patient_name FROM studies st
		JOIN patients p ON p.pk = st.patient_pk WHERE st.study_uid = ?`, studyUID).Scan(&id, &pn)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", ErrNotFound
	}
	if err != nil {
		return "", "", fmt.Errorf("store: study patient: %w", err)
	}
	for group := range strings.SplitSeq(pn, "=") {
		if strings.IndexFunc(group, func(r rune) bool { return unicode.Is(unicode.Han, r) }) >= 0 {
			return id, strings.ReplaceAll(group, "^", ""), nil
		}
	}
	return id, pn, nil
}

// StudyInstitution returns the institution that owns a stored study (the first uploader's),
// or ErrNotFound.
func (s *Store) StudyInstitution(ctx context.Context, studyUID string) (int64, error) {
	var id int64
	err := s.db.QueryRowContext(ctx, `SELECT institution_id FROM studies WHERE study_uid = ?`, studyUID).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("store: study institution: %w", err)
	}
	return id, nil
}
