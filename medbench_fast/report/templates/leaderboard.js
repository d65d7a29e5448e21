(function () {
  "use strict";

  function value(row, col, type) {
    var cell = row.cells[col];
    var v = cell ? cell.getAttribute("data-v") : null;
    if (v === null || v === "") { return null; }
    if (type === "num") {
      var n = Number(v);
      return isNaN(n) ? null : n;
    }
    return v.toLowerCase();
  }

  function sortTable(table, col, dir) {
    var th = table.tHead.rows[0].cells[col];
    var type = th.getAttribute("data-type");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = value(a, col, type), y = value(b, col, type);
      if (x === null || y === null) { return (x === null) - (y === null); }
      if (x === y) { return 0; }
      return (x < y ? -1 : 1) * (dir === "asc" ? 1 : -1);
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (c) { c.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir === "asc" ? "ascending" : "descending");
  }

  function rerank(table, col) {
    var type = table.tHead.rows[0].cells[col].getAttribute("data-type");
    var rank = 0;
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
      var cell = row.cells[0];
      var has = value(row, col, type) !== null;
      rank += has ? 1 : 0;
      cell.textContent = has ? String(rank) : "\u2013";
      cell.setAttribute("data-v", has ? String(rank) : "");
    });
  }

  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      var button = th.querySelector("button");
      button.addEventListener("click", function () {
        var current = th.getAttribute("aria-sort");
        var first = th.getAttribute("data-better") || (th.getAttribute("data-type") === "num" ? "desc" : "asc");
        var dir = current === "ascending" ? "desc" : current === "descending" ? "asc" : first;
        sortTable(table, col, dir);
      });
    });
  });

  var select = document.getElementById("rank-by");
  var board = document.getElementById("leaderboard-table");
  if (select && board) {
    var apply = function () {
      var col = Number(select.value);
      var th = board.tHead.rows[0].cells[col];
      sortTable(board, col, th.getAttribute("data-better") || "desc");
      rerank(board, col);
    };
    select.addEventListener("change", apply);
    apply();
  }
}());
