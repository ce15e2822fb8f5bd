// The flows page follows the agents: every 2 s it asks the console for the
// table's rows again (same filter) while "live" is ticked.
(function () {
  var table = document.querySelector("table.flows");
  var body = document.getElementById("flow-rows");
  var live = document.getElementById("live");
  if (!table || !body || !live) return;
  var query = table.getAttribute("data-query") || "";
  function refresh() {
    if (!live.checked) return;
    fetch("/flows/rows?" + query, { cache: "no-store" })
      .then(function (r) { return r.text(); })
      .then(function (html) { body.innerHTML = html; })
      .catch(function () {});
  }
  setInterval(refresh, 2000);
})();
