/* The page's keyboard (issue 19; visualizer/app/pins.py): j / k the next / previous point (in the box or
   lasso selection, else in the clicked point's class), → / ← (or l / h) the next / previous step on the
   teacher's slider. Each key goes to the server as {action, at} in the `key-action` store. Keys are left
   alone while the user types (a box, a dropdown, anything editable), while the slider has the focus (its
   own arrow keys move it) and with a modifier held (the browser's own shortcuts). */
(function () {
  const ACTIONS = {j: 'next-point', k: 'prev-point', ArrowRight: 'next-step', ArrowLeft: 'prev-step',
                   l: 'next-step', h: 'prev-step'};

  function busy(el) {
    if (!el || el === document.body) { return false; }
    const tag = (el.tagName || '').toLowerCase();
    if (tag === 'input' || tag === 'textarea' || tag === 'select' || el.isContentEditable) { return true; }
    const role = el.getAttribute && el.getAttribute('role');
    return role === 'slider' || role === 'combobox' || role === 'textbox' || role === 'listbox';
  }

  document.addEventListener('keydown', function (e) {
    if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey || e.isComposing) { return; }
    const action = ACTIONS[e.key];
    if (!action || busy(e.target) || busy(document.activeElement)) { return; }
    const dc = window.dash_clientside;
    if (!dc || !dc.set_props) { return; }
    e.preventDefault();
    dc.set_props('key-action', {data: {action: action, at: Date.now()}});
  });
})();
