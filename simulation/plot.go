package simulation

import (
	"fmt"
	"image/color"
	"io"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// WritePlot draws the report's completion curve as SVG: the fraction of
// nodes that hold the release verified, and the fraction that know of it,
// against seconds since publishing, with the Kumar–Ross bound as a vertical
// line.
func WritePlot(w io.Writer, r *Report) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("rpe: %d nodes, %s file, %s clock (seed %d)", r.Nodes, bytesStr(r.SizeBytes), r.Clock, r.Seed)
	p.X.Label.Text = "seconds since publishing"
	p.Y.Label.Text = "fraction of nodes"
	// Room above the curves for the legend; ticks only from 0 to 1.
	p.Y.Min, p.Y.Max = 0, 1.45
	var ticks []plot.Tick
	for _, v := range []float64{0, 0.25, 0.5, 0.75, 1} {
		ticks = append(ticks, plot.Tick{Value: v, Label: fmt.Sprintf("%.0f%%", v*100)})
	}
	p.Y.Tick.Marker = plot.ConstantTicks(ticks)
	p.X.Min = 0
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.XOffs = vg.Points(10)
	p.Legend.YOffs = -vg.Points(5)
	p.Legend.ThumbnailWidth = vg.Points(30)

	verified := make(plotter.XYs, 0, len(r.Series))
	aware := make(plotter.XYs, 0, len(r.Series))
	xmax := 0.0
	for _, pt := range r.Series {
		verified = append(verified, plotter.XY{X: pt.T, Y: pt.Verified})
		aware = append(aware, plotter.XY{X: pt.T, Y: pt.Aware})
		xmax = max(xmax, pt.T)
	}
	if r.TMinS != nil {
		xmax = max(xmax, *r.TMinS)
	}
	if xmax == 0 {
		xmax = 1
	}
	xmax *= 1.05
	// Extend both curves flat to the right edge.
	if n := len(r.Series); n > 0 {
		last := r.Series[n-1]
		verified = append(verified, plotter.XY{X: xmax, Y: last.Verified})
		aware = append(aware, plotter.XY{X: xmax, Y: last.Aware})
	}
	p.X.Max = xmax

	la, err := plotter.NewLine(aware)
	if err != nil {
		return fmt.Errorf("simulation: plot: %w", err)
	}
	la.StepStyle = plotter.PostStep
	la.Color = color.RGBA{R: 150, G: 150, B: 150, A: 255}
	la.Width = vg.Points(1.5)
	la.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(la)
	p.Legend.Add("aware of the release", la)

	lv, err := plotter.NewLine(verified)
	if err != nil {
		return fmt.Errorf("simulation: plot: %w", err)
	}
	lv.StepStyle = plotter.PostStep
	lv.Color = color.RGBA{R: 20, G: 90, B: 200, A: 255}
	lv.Width = vg.Points(2)
	p.Add(lv)
	p.Legend.Add(fmt.Sprintf("verified (%d of %d)", r.Completed, r.Nodes), lv)

	if r.TMinS != nil {
		b, err := plotter.NewLine(plotter.XYs{{X: *r.TMinS, Y: 0}, {X: *r.TMinS, Y: 1.05}})
		if err != nil {
			return fmt.Errorf("simulation: plot: %w", err)
		}
		b.Color = color.RGBA{R: 200, G: 40, B: 40, A: 255}
		b.Width = vg.Points(1.5)
		b.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
		p.Add(b)
		p.Legend.Add(fmt.Sprintf("lower bound t_min = %.2fs", *r.TMinS), b)
	}
	if r.TAllS != nil {
		p.Legend.Add(fmt.Sprintf("all verified at %.2fs", *r.TAllS), emptyThumb{})
	}
	if r.RatioToBound != nil {
		p.Legend.Add(fmt.Sprintf("ratio to bound %.2f", *r.RatioToBound), emptyThumb{})
	}

	wt, err := p.WriterTo(8*vg.Inch, 5*vg.Inch, "svg")
	if err != nil {
		return fmt.Errorf("simulation: plot: %w", err)
	}
	if _, err := wt.WriteTo(w); err != nil {
		return fmt.Errorf("simulation: plot: %w", err)
	}
	return nil
}

// emptyThumb is a legend entry with text only.
type emptyThumb struct{}

func (emptyThumb) Thumbnail(*draw.Canvas) {}

// WritePlotFile writes WritePlot's SVG to a file.
func WritePlotFile(path string, r *Report) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("simulation: %w", err)
	}
	if err := WritePlot(f, r); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("simulation: write %s: %w", path, err)
	}
	return nil
}
